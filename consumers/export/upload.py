"""A dataset built in a local staging directory, then uploaded to a bucket (``export dataset
s3://BUCKET/PREFIX``).

The dataset is built in the staging directory exactly as in a destination directory (its resume
state, ``.state``, lives there), so a killed export resumes as a local one does. Then every
shard and the card are uploaded, each object whole (one PUT, or a multipart upload that is
aborted on failure) with its sha256 recorded as object metadata; an object already there with
the right sha256 is not sent again, so a rerun completes a killed upload. ``manifest.json`` goes
last, so a reader never trusts a half upload; then every object is read back and checked against
it (``export verify``). Only then is the staging directory removed.

The destination prefix must be empty for a new export; when resuming, it may hold this export's
own objects, never another export's manifest or files that are not this export's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from consumers.export.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    read_manifest,
    verify,
    write_manifest,
)
from consumers.export.progress import Progress
from consumers.export.source import ExportError
from consumers.export.store import UploadStore

# In the staging directory after a verification failed: the next run sends every object again
# (a damaged object may carry the right sha256 in its metadata).
RESEND_MARKER = ".resend-all"


def default_staging(location: str, env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME`` (else ``~/.cache``) ``/logorhythms/exports/<hash of the URL>``: the
    same command finds the same directory again, different destinations never share one."""
    env = os.environ if env is None else env
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    name = hashlib.sha256(location.encode()).hexdigest()[:32]
    return cache / "logorhythms" / "exports" / name


class Upload:
    """Where a dataset built in ``staging`` goes, and the checks before and after it goes."""

    def __init__(self, store: UploadStore) -> None:
        self.store = store

    @property
    def location(self) -> str:
        return self.store.location

    def begin(self, staging: Path, *, resuming: bool) -> None:
        """Before anything is built: the bucket is usable, the prefix empty for a new export,
        the staging directory made private (0700: it holds the dataset before anywhere else).
        A resumed export's prefix may hold its own objects; ``finish`` checks them."""
        self.store.prepare()
        present = self.store.files()
        if present and not resuming:
            raise ExportError(
                f"{self.location} is not empty (it holds {present[0]}): choose a new or empty "
                "prefix"
            )
        if not staging.exists():  # an existing one (--staging DIR) keeps the mode it was given
            staging.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            staging.mkdir(mode=0o700)

    def finish(self, staging: Path, manifest: Manifest) -> str:
        """Upload every file the manifest lists from ``staging``, then the manifest; check what
        landed; the manifest's sha256."""
        entries = sorted(manifest.files, key=lambda entry: entry.path)
        ours = {entry.path for entry in entries} | {MANIFEST_NAME}
        present = self.store.files()
        if MANIFEST_NAME in present:  # this export's own, from a run killed after it
            try:
                found = read_manifest(self.store).export_id
            except ManifestError:
                found = "an unreadable manifest"
            if found != manifest.export_id:
                raise ExportError(
                    f"{self.location} holds another export ({found}), not this unfinished "
                    f"one ({manifest.export_id}, in {staging}): remove it and run the same "
                    "command again, or choose a new or empty prefix"
                )
        foreign = [relative for relative in present if relative not in ours]
        if foreign:
            raise ExportError(
                f"{self.location} holds files that are not this export's (e.g. {foreign[0]}): "
                "remove them and run the same command again, or choose a new or empty prefix"
            )
        resend = (staging / RESEND_MARKER).exists()
        progress = Progress(f"uploading to {self.location}", total=len(entries), unit="files")
        for entry in entries:
            if resend or self.store.uploaded_sha256(entry.path) != entry.sha256:
                self.store.upload(
                    staging / entry.path,
                    entry.path,
                    sha256=entry.sha256,
                    on_bytes=lambda sent: progress.advance(0, sent),
                )
            progress.advance(1)
        progress.close()
        manifest_sha256 = write_manifest(self.store, manifest)  # last: it vouches for the rest
        checked = verify(self.store, expected_manifest_sha256=manifest_sha256)
        if not checked.ok:
            (staging / RESEND_MARKER).touch()
            raise ExportError(
                f"the upload to {self.location} does not match its manifest "
                f"({len(checked.problems)} problem(s), first: {checked.problems[0]}): run the "
                "same command again to upload every file again"
            )
        return manifest_sha256
