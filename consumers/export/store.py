"""Where an export's files live: a local directory or an S3-compatible bucket, behind one interface.

The archive, restore, ``export legal`` and ``export verify`` read and write through an
``ExportStore``, so the layout, the manifest and its checks are the same wherever the files
are. Files are made whole in a local staging directory (for a directory store, the directory
itself) and then put in place in one step: a rename, or one PUT (or a multipart upload that is
aborted on failure) in a bucket. The manifest, written last, is what makes a file trusted.

``s3://BUCKET/PREFIX`` destinations are served by ``consumers.export.objectstore`` (the only
module that imports the S3 client); the command line loads it only when such a URL is given.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

OBJECT_SCHEME = "s3://"


class StoreError(Exception):
    """A destination that cannot be used; the message says what to do. Exits with status 2.

    Messages name the destination by its location and the endpoint without credentials: no
    secret ever reaches one.
    """

    retriable = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectStoreSettings:
    """How to reach an S3-compatible service. Credentials are not here: they come from the
    standard AWS chain (environment, ``AWS_PROFILE`` and its files, SSO, instance roles)."""

    endpoint_url: str | None = None  # None: AWS itself (or AWS_ENDPOINT_URL, read by the client)
    region: str | None = None  # None: AWS_REGION / AWS_DEFAULT_REGION / the profile's

    @classmethod
    def from_environment(
        cls,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ObjectStoreSettings:
        """Command-line values first, else the AWS SDKs' own variables."""
        env = os.environ if env is None else env
        return cls(
            endpoint_url=endpoint_url
            or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
            or None,
            region=region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        )


class ExportStore(Protocol):
    """The files of one export, addressed by POSIX paths relative to its root."""

    @property
    def location(self) -> str:
        """The root as shown in messages, manifests and the audit row (never credentials)."""
        ...

    def prepare(self) -> None:
        """Make the root usable for writing (create the directory; check the bucket)."""
        ...

    def files(self) -> list[str]:
        """Every file under the root, relative, sorted."""
        ...

    def size(self, relative: str) -> int | None:
        """The file's size in bytes, None when it does not exist."""
        ...

    def read_bytes(self, relative: str) -> bytes | None:
        """The whole file, None when it does not exist."""
        ...

    def open_read(self, relative: str) -> AbstractContextManager[BinaryIO]:
        """The file, seekable, for reading."""
        ...

    def staging(self) -> AbstractContextManager[Path]:
        """A local directory to make files in before ``put`` moves them into the store."""
        ...

    def put(self, staged: Path, relative: str) -> None:
        """Move a complete local file into the store at ``relative``, in one step."""
        ...

    def put_bytes(self, relative: str, data: bytes) -> None:
        """Write ``data`` at ``relative`` in one step (a reader sees the old file or the new)."""
        ...

    def local_copy(self) -> AbstractContextManager[Path]:
        """A local directory holding every file of the store, for the time of the block."""
        ...


class UploadStore(ExportStore, Protocol):
    """A store that a locally built export is uploaded into (``consumers.export.upload``)."""

    def uploaded_sha256(self, relative: str) -> str | None:
        """The sha256 recorded with the object when it was uploaded; None when the object is
        absent or was put there some other way."""
        ...

    def upload(
        self, local: Path, relative: str, *, sha256: str, on_bytes: Callable[[int], None]
    ) -> None:
        """Copy a complete local file to ``relative`` in one step, recording its sha256; the
        local file stays. ``on_bytes`` is told of each part sent."""
        ...


def is_inside(relative: str) -> bool:
    """Whether a manifest's path or an object's key names one file under the root, the same in
    a directory and a bucket: relative, no empty, ``.`` or ``..`` segment (``a//b``, ``a/./b``
    and ``a/../b`` are one key in a bucket but another file, or a file elsewhere, on a disk),
    and no control character (a NUL ends a path early; a newline forges a line of output)."""
    parts = relative.split("/")
    return (
        bool(relative)
        and all(part not in ("", ".", "..") for part in parts)
        and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in relative)
    )


def shown(relative: str) -> str:
    """A name from a listing or a manifest as one printable line: quoted with escapes when it
    is empty or holds a control character, as is otherwise."""
    if not relative or any(ord(c) < 0x20 or ord(c) == 0x7F for c in relative):
        return json.dumps(relative)
    return relative


def check_directory_destination(directory: Path) -> None:
    """Refuse a destination directory that is a symbolic link or not a directory: an export's
    raw data goes where it was told, never through a link someone else may have planted."""
    if directory.is_symlink():
        raise StoreError(
            f"{directory} is a symbolic link (to {os.readlink(directory)}): give the directory "
            "itself"
        )
    if directory.exists() and not directory.is_dir():
        raise StoreError(
            f"{directory} exists and is not a directory: give a new or empty directory"
        )


def _open_regular(path: Path) -> BinaryIO:
    """``path`` for reading if it is a regular file: never through a symbolic link, never a
    FIFO or a device (which could block or never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        if path.is_symlink():
            raise StoreError(
                f"{path} is a symbolic link: an export holds regular files only, and nothing is "
                "read through a link"
            ) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreError(f"{path} is not a regular file: an export holds regular files only")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class DirectoryStore:
    """An export in a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def prepare(self) -> None:
        """Create the directory (0700); refuse a link, a file, or a directory holding a link or
        a special file (an archive adds to one: its runs must not write through a link)."""
        check_directory_destination(self.root)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"{self.root} cannot be created ({exc.strerror}): choose a directory you can write"
            ) from None
        for relative in self.files():  # nothing already there is written through
            self.size(relative)  # a link or a special file: StoreError

    def files(self) -> list[str]:
        """Every entry that is not a directory, links to directories included (listed, never
        followed): an "empty" destination holds nothing a write could go through."""
        if not self.root.is_dir():
            return []
        found = []
        for directory, subdirectories, names in os.walk(self.root):  # links are not descended
            here = Path(directory)
            links = [d for d in subdirectories if (here / d).is_symlink()]
            found += [(here / name).relative_to(self.root).as_posix() for name in names + links]
        return sorted(found)

    def size(self, relative: str) -> int | None:
        """None when absent; a link or a file that is not regular is refused (``StoreError``)."""
        path = self.root / relative
        try:
            mode = path.lstat()
        except (OSError, ValueError):  # absent, or a name no file can have
            return None
        if stat.S_ISLNK(mode.st_mode):
            raise StoreError(
                f"{relative} is a symbolic link: an export holds regular files only, and nothing "
                "is read through a link"
            )
        if stat.S_ISDIR(mode.st_mode):
            return None
        if not stat.S_ISREG(mode.st_mode):
            raise StoreError(
                f"{relative} is not a regular file: an export holds regular files only"
            )
        return mode.st_size

    def read_bytes(self, relative: str) -> bytes | None:
        try:
            with _open_regular(self.root / relative) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def open_read(self, relative: str) -> AbstractContextManager[BinaryIO]:
        return _open_regular(self.root / relative)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        # Inside the root: ``put`` is then a rename on one file system.
        yield self.root

    def put(self, staged: Path, relative: str) -> None:
        target = self.root / relative
        if staged == target:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(target)

    def put_bytes(self, relative: str, data: bytes) -> None:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.unlink(missing_ok=True)  # a leftover, or a link planted to write through
        with temporary.open("xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        temporary.replace(target)

    @contextlib.contextmanager
    def local_copy(self) -> Iterator[Path]:
        yield self.root


def staged_path(staging: Path, relative: str) -> Path:
    """Where a file to be put at ``relative`` is made: a hidden name beside its final place,
    with the same ending (its rows are counted by it)."""
    final = staging / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = final.with_name(f".tmp.{final.name}")
    # A leftover of a killed run, or a link planted there for the next run to write through.
    staged.unlink(missing_ok=True)
    return staged


def as_store(root: Path | ExportStore) -> ExportStore:
    return DirectoryStore(root) if isinstance(root, Path) else root
