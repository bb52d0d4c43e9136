"""The manifest of an export directory: every file's sha256, size and rows, and how it was made.

``manifest.json`` is written deterministically (sorted keys, files sorted by path, one trailing
newline), so its own sha256 (recorded in the audit table) identifies exactly what went out.
``verify`` recomputes every checksum, size and row count and names each mismatch, every missing
file and every file the manifest does not list: a copy that verifies is the copy that was made.
Manifests are read, written and verified in a directory or a bucket alike (``ExportStore``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.parquet as pq

from consumers.export.store import (
    DirectoryStore,
    ExportStore,
    StoreError,
    as_store,
    is_inside,
    shown,
)

MANIFEST_NAME = "manifest.json"
FORMAT = "logorhythms-export-manifest/1"
KINDS = frozenset({"dataset", "legal", "archive"})
_READ_BYTES = 1024 * 1024
# A manifest is read whole into memory; ours take ~250 bytes a file, so this allows a million
# files and refuses a hostile one that would exhaust memory.
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(Exception):
    """A manifest that cannot be read or written; the message says which file and why."""

    retriable = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One file of an export: its path relative to the export directory, in POSIX form."""

    path: str
    sha256: str
    size: int
    rows: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "rows": self.rows}


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """What an export holds and how it was made.

    ``metadata`` carries what differs by kind: the filter and the SQL that ran, the time range,
    row counts, recipient, licence and profile, case reference, per-day checksums of an archive.
    """

    kind: str
    export_id: str
    created_at: str  # ISO 8601, UTC
    tool_version: str
    schema_version: int
    snapshot_id: str
    files: tuple[FileEntry, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ManifestError(
                f"unknown export kind {self.kind!r}; expected one of {sorted(KINDS)}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "export_id": self.export_id,
            "created_at": self.created_at,
            "tool": {"name": "logorhythms", "version": self.tool_version},
            "schema_version": self.schema_version,
            "snapshot_id": self.snapshot_id,
            "files": [f.to_json() for f in sorted(self.files, key=lambda f: f.path)],
            "metadata": dict(self.metadata),
        }

    def file(self, path: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == path), None)


def _sha256_of(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    while block := f.read(_READ_BYTES):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return _sha256_of(f)


def _parquet_rows(f: BinaryIO) -> int:
    return int(pq.ParquetFile(f).metadata.num_rows)


def _count_lines(f: BinaryIO) -> int:
    count = 0
    for _ in f:
        count += 1
    return count


def _gzip_lines(f: BinaryIO) -> int:
    with gzip.GzipFile(fileobj=f, mode="rb") as lines:
        return _count_lines(lines)  # type: ignore[arg-type]


# How rows are counted again by `verify`, by file name ending, from the open file. Other files
# (raw bodies, cards) have no rows: their sha256 and size are what is checked.
ROW_COUNTERS: dict[str, Callable[[BinaryIO], int]] = {
    ".parquet": _parquet_rows,
    ".jsonl": _count_lines,
    ".jsonl.gz": _gzip_lines,
}


def _row_counter(name: str) -> Callable[[BinaryIO], int] | None:
    return next((count for end, count in ROW_COUNTERS.items() if name.endswith(end)), None)


def describe_file(root: Path, relative: str, *, rows: int | None = None) -> FileEntry:
    """The entry for a local file ``root/relative``; rows are counted when not given."""
    path = root / relative
    if rows is None and (counter := _row_counter(path.name)) is not None:
        with path.open("rb") as f:
            rows = counter(f)
    return FileEntry(
        path=Path(relative).as_posix(),
        sha256=sha256_file(path),
        size=path.stat().st_size,
        rows=rows,
    )


def render(manifest: Manifest) -> bytes:
    text = json.dumps(manifest.to_json(), sort_keys=True, indent=2, ensure_ascii=False)
    return (text + "\n").encode()


def write_manifest(root: Path | ExportStore, manifest: Manifest) -> str:
    """Write ``manifest.json`` atomically (a crash leaves the old one or none); its sha256."""
    data = render(manifest)
    as_store(root).put_bytes(MANIFEST_NAME, data)
    return hashlib.sha256(data).hexdigest()


def _manifest_bytes(store: ExportStore) -> bytes:
    path = f"{store.location}/{MANIFEST_NAME}"
    try:
        size = store.size(MANIFEST_NAME)
        if size is not None and size > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"{path} is {size:,} bytes, over the {MAX_MANIFEST_BYTES:,} a manifest may be: "
                "it was not made by Logorhythms; do not use this export"
            )
        data = store.read_bytes(MANIFEST_NAME) if size is not None else None
    except (OSError, StoreError) as exc:
        raise ManifestError(f"{path} cannot be read: {exc}") from None
    if data is None:
        raise ManifestError(f"{path} does not exist: is {store.location} an export?")
    return data


def _int(value: object, name: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManifestError(f"{name} is {value!r}, not a count")
    return value


def _file_entry(raw: object) -> FileEntry:
    """One entry of ``files``, every field of its type; its path is checked by ``verify``."""
    if not isinstance(raw, dict):
        raise ManifestError(f"a file entry is {type(raw).__name__}, not an object")
    path, sha256 = raw.get("path"), raw.get("sha256")
    if not isinstance(path, str):
        raise ManifestError(f"a file's path is {path!r}, not a string")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ManifestError(f"{shown(path)}: sha256 {sha256!r} is not 64 hex digits")
    size = _int(raw.get("size"), f"{shown(path)}: size")
    rows = _int(raw.get("rows"), f"{shown(path)}: rows", optional=True)
    return FileEntry(path=path, sha256=sha256, size=size or 0, rows=rows)


def _file_entries(raw: object) -> tuple[FileEntry, ...]:
    if not isinstance(raw, list):
        raise ManifestError(f"files is {type(raw).__name__}, not a list")
    files = tuple(_file_entry(f) for f in raw)
    seen: set[str] = set()
    for entry in files:
        if entry.path in seen:
            raise ManifestError(f"it lists {shown(entry.path)} twice")
        seen.add(entry.path)
    return files


def read_manifest(root: Path | ExportStore) -> Manifest:
    store = as_store(root)
    path = f"{store.location}/{MANIFEST_NAME}"
    try:
        raw = json.loads(_manifest_bytes(store))
    except ValueError as exc:
        raise ManifestError(f"{path} cannot be read as JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path} is a JSON {type(raw).__name__}, not a manifest")
    if raw.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a {FORMAT} manifest (format {raw.get('format')!r})")
    try:
        files = _file_entries(raw.get("files"))
        metadata = raw.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ManifestError(f"metadata is {type(metadata).__name__}, not an object")
        return Manifest(
            kind=raw["kind"],
            export_id=raw["export_id"],
            created_at=raw["created_at"],
            tool_version=raw["tool"]["version"],
            schema_version=_int(raw["schema_version"], "schema_version") or 0,
            snapshot_id=raw["snapshot_id"],
            files=files,
            metadata=metadata,
        )
    except ManifestError as exc:
        raise ManifestError(f"{path} is malformed: {exc}; do not use this export") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"{path} is missing or has a malformed field: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class Verification:
    """What ``verify`` found: ``problems`` is empty when every file matches."""

    manifest_sha256: str
    files_checked: int
    rows_checked: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _stays_inside(store: ExportStore, relative: str) -> bool:
    if not is_inside(relative):
        return False
    if isinstance(store, DirectoryStore):  # and no symbolic link leads out of the directory
        root = store.root.resolve()
        resolved = (root / relative).resolve()
        return resolved == root or root in resolved.parents
    return True


def verify(
    root: Path | ExportStore, *, expected_manifest_sha256: str | None = None
) -> Verification:
    """Recompute every file's sha256, size and rows against the manifest; report every mismatch."""
    store = as_store(root)
    manifest_bytes = _manifest_bytes(store)
    manifest = read_manifest(store)
    manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
    problems: list[str] = []
    if expected_manifest_sha256 is not None and manifest_sha256 != expected_manifest_sha256:
        problems.append(
            f"{MANIFEST_NAME}: sha256 {manifest_sha256} is not the expected "
            f"{expected_manifest_sha256} (the manifest itself was changed or replaced)"
        )
    rows_checked = 0
    present = store.files()
    for entry in sorted(manifest.files, key=lambda f: f.path):
        name = shown(entry.path)
        if not _stays_inside(store, entry.path):
            problems.append(f"{name}: the manifest names a file outside the export directory")
            continue
        try:
            problem, rows = _check_file(store, entry)
        except (OSError, StoreError) as exc:  # a link, a device, an unreadable file
            problem, rows = f"cannot be checked: {' '.join(str(exc).split())}", 0
        rows_checked += rows
        if problem:
            problems.append(f"{name}: {problem}")
    listed = {f.path for f in manifest.files}
    problems += [
        f"{shown(relative)}: not in the manifest"
        for relative in present
        if relative != MANIFEST_NAME and relative not in listed
    ]
    return Verification(manifest_sha256, len(manifest.files), rows_checked, tuple(problems))


def _check_file(store: ExportStore, entry: FileEntry) -> tuple[str, int]:
    """What is wrong with one listed file (empty when nothing) and the rows counted in it."""
    size = store.size(entry.path)
    if size is None:
        return "missing", 0
    with store.open_read(entry.path) as f:
        digest = _sha256_of(f)
    if digest != entry.sha256:
        wrong_size = (
            f"size {size} bytes, the manifest says {entry.size}; " if size != entry.size else ""
        )
        # Its rows cannot be trusted, and may not even parse.
        return f"{wrong_size}sha256 {digest}, the manifest says {entry.sha256}", 0
    if size != entry.size:
        return f"size {size} bytes, the manifest says {entry.size}", 0
    counter = _row_counter(entry.path)
    if entry.rows is None or counter is None:
        return "", 0
    try:
        with store.open_read(entry.path) as f:
            rows = counter(f)
    except Exception as exc:  # a damaged file of any kind: report it, check the rest
        return f"rows cannot be counted: {' '.join(str(exc).split())}", 0
    if rows != entry.rows:
        return f"{rows} rows, the manifest says {entry.rows}", rows
    return "", rows
