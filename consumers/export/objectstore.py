"""An export in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...): the s3fs adapter.

The only module that imports s3fs and botocore (docs/decisions/0027-s3-destinations-with-s3fs.md).
Credentials are never passed in: botocore finds them as the AWS CLI does (environment,
``AWS_PROFILE`` and its config files, SSO, web identity, instance roles), so no key appears on a
command line, in a manifest, an audit row or a message.

Each object is written in one step: a single PUT, or for a large file a multipart upload that
s3fs aborts when any part fails, so no half object appears under its final key. Library errors
are translated here into one ``StoreError`` line a user can act on; they are classified by type
(s3fs maps S3's error codes to ``FileNotFoundError`` and ``PermissionError``), never by text.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, cast
from urllib.parse import urlsplit

import s3fs
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as EndpointUnreachable

from consumers.export.store import (
    OBJECT_SCHEME,
    ObjectStoreSettings,
    StoreError,
    is_inside,
    shown,
)

# One attempt and two retries per request; a refused connection fails within seconds.
_CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 10,
    "read_timeout": 120,
    "retries": {"max_attempts": 3, "mode": "standard"},
}


# The user metadata key (x-amz-meta-sha256) an uploaded object's sha256 is recorded under.
SHA256_METADATA = "sha256"


class _BytesSent:
    """What s3fs calls on an fsspec callback during ``put_file`` (``set_size`` once, then
    ``relative_update`` per PUT or part), passed on as bytes sent. Duck-typed rather than a
    subclass of fsspec's untyped ``Callback``."""

    def __init__(self, on_bytes: Callable[[int], None]) -> None:
        self._on_bytes = on_bytes

    def set_size(self, size: int) -> None:
        pass

    def relative_update(self, inc: int = 1) -> None:
        self._on_bytes(inc)


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    rest = url[len(OBJECT_SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StoreError(f"{url!r} names no bucket: give s3://BUCKET or s3://BUCKET/PREFIX")
    return bucket, prefix.strip("/")


def _checked_endpoint(endpoint_url: str | None) -> str | None:
    if endpoint_url is None:
        return None
    parts = urlsplit(endpoint_url)
    if parts.username is not None or parts.password is not None:
        # Say nothing of what was given: it holds a secret.
        raise StoreError(
            "the S3 endpoint URL holds credentials: give the endpoint as http(s)://HOST:PORT "
            "and the credentials in the AWS environment or profile (AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StoreError(
            "the S3 endpoint must be http(s)://HOST[:PORT] (--s3-endpoint or AWS_ENDPOINT_URL)"
        )
    return endpoint_url


class ObjectStore:
    """The files of one export under ``s3://BUCKET/PREFIX``."""

    def __init__(self, url: str, settings: ObjectStoreSettings) -> None:
        self.bucket, self.prefix = _bucket_and_prefix(url)
        self.endpoint_url = _checked_endpoint(settings.endpoint_url)
        client_kwargs: dict[str, Any] = {}
        if settings.region:
            client_kwargs["region_name"] = settings.region
        self._fs = s3fs.S3FileSystem(
            endpoint_url=self.endpoint_url,
            client_kwargs=client_kwargs,
            config_kwargs=_CLIENT_CONFIG,
            skip_instance_cache=True,  # no object state shared between stores
            use_listings_cache=False,  # a listing is always the bucket's current one
        )

    @property
    def location(self) -> str:
        return f"{OBJECT_SCHEME}{self._root}"

    @property
    def _root(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def _key(self, relative: str) -> str:
        return f"{self._root}/{relative}"

    def _where(self) -> str:
        return f"the S3 endpoint {self.endpoint_url}" if self.endpoint_url else "AWS S3"

    def _fail(self, exc: BaseException, doing: str) -> NoReturn:
        """Translate a library error into one line saying what to do."""
        if isinstance(exc, FileNotFoundError):
            raise StoreError(
                f"the bucket {self.bucket!r} does not exist at {self._where()}: create it "
                f"(aws s3 mb s3://{self.bucket}) or correct the URL, --s3-endpoint or "
                "AWS_ENDPOINT_URL"
            ) from None
        if isinstance(exc, PermissionError):
            raise StoreError(
                f"access denied while {doing} {self.location}: the AWS credentials in use "
                "(environment or AWS_PROFILE) need s3:ListBucket on the bucket and "
                "s3:GetObject, s3:PutObject on the prefix; check them with "
                "`aws sts get-caller-identity`"
            ) from None
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            raise StoreError(
                "no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY) in the environment; they are never taken from the "
                "command line"
            ) from None
        if isinstance(exc, EndpointUnreachable):
            raise StoreError(
                f"cannot reach {self._where()} while {doing} {self.location}: check "
                "--s3-endpoint or AWS_ENDPOINT_URL, and that the service is up and reachable"
            ) from None
        # The text is the service's or the client's; neither ever holds the secret key (requests
        # are signed with it, never carry it) and the endpoint was checked for credentials.
        detail = " ".join(str(exc).split())[:300]
        raise StoreError(
            f"S3 failed while {doing} {self.location} at {self._where()}: "
            f"{type(exc).__name__}: {detail}; run again, or check the service's status"
        ) from None

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (OSError, BotoCoreError, ClientError) as exc:
            self._fail(exc, doing)

    def prepare(self) -> None:
        with self._translated("checking"):
            self._fs.find(self._root, maxdepth=1)  # fails for a missing bucket or no access

    def files(self) -> list[str]:
        with self._translated("listing"):
            keys = cast(list[str], self._fs.find(self._root))
        start = len(self._root) + 1
        return sorted(k[start:] for k in keys if not k.endswith("/") and len(k) > start)

    def size(self, relative: str) -> int | None:
        try:
            return int(self._fs.size(self._key(relative)))
        except FileNotFoundError:
            return None
        except (OSError, BotoCoreError, ClientError) as exc:
            self._fail(exc, "reading")

    def read_bytes(self, relative: str) -> bytes | None:
        try:
            return cast(bytes, self._fs.cat_file(self._key(relative)))
        except FileNotFoundError:
            self.prepare()  # a missing bucket is an error, a missing object is an answer
            return None
        except (OSError, BotoCoreError, ClientError) as exc:
            self._fail(exc, "reading")

    @contextlib.contextmanager
    def open_read(self, relative: str) -> Iterator[BinaryIO]:
        with self._translated("reading"):
            opened = self._fs.open(self._key(relative), "rb")
        # Errors of the reader's own (a damaged Parquet file) pass through untranslated.
        with opened as f:
            yield cast(BinaryIO, f)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="logorhythms-staging-") as directory:
            yield Path(directory)

    def put(self, staged: Path, relative: str) -> None:
        with self._translated("writing"):
            self._fs.put_file(str(staged), self._key(relative))
        staged.unlink(missing_ok=True)

    def uploaded_sha256(self, relative: str) -> str | None:
        try:
            metadata = cast(dict[str, Any], self._fs.metadata(self._key(relative)))
        except FileNotFoundError:
            return None
        except (OSError, BotoCoreError, ClientError) as exc:
            self._fail(exc, "reading")
        value = metadata.get(SHA256_METADATA)
        return value if isinstance(value, str) else None

    def upload(
        self, local: Path, relative: str, *, sha256: str, on_bytes: Callable[[int], None]
    ) -> None:
        with self._translated("writing"):
            self._fs.put_file(
                str(local),
                self._key(relative),
                callback=_BytesSent(on_bytes),
                Metadata={SHA256_METADATA: sha256},  # one PUT, or every part of a multipart
            )

    def put_bytes(self, relative: str, data: bytes) -> None:
        with self._translated("writing"):
            self._fs.pipe_file(self._key(relative), data)

    @contextlib.contextmanager
    def local_copy(self) -> Iterator[Path]:
        """Every object, copied under a new private directory. A key that would name a file
        elsewhere (``..``, an empty segment, a control character) or a file and a directory at
        once is refused before anything is copied."""
        keys = self.files()
        unsafe = [k for k in keys if not is_inside(k)]
        parts = [k.split("/") for k in keys]
        directories = {"/".join(p[:i]) for p in parts for i in range(1, len(p))}
        unsafe += [k for k in keys if k in directories]
        if unsafe:
            raise StoreError(
                f"{self.location} holds an object whose key is no file of an export "
                f"({shown(unsafe[0])}): nothing is copied; do not restore from this prefix"
            )
        with tempfile.TemporaryDirectory(prefix="logorhythms-restore-") as directory:
            local = Path(directory)
            for relative in keys:
                target = local / relative
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                with self._translated("reading"):
                    self._fs.get_file(self._key(relative), str(target))
            yield local
