"""The export manifest: deterministic, and `verify` names every kind of mismatch."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consumers.export.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    describe_file,
    read_manifest,
    render,
    verify,
    write_manifest,
)


def _export(root: Path) -> Manifest:
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.table({"x": list(range(7))}), root / "data" / "part-00000.parquet")
    with gzip.open(root / "data" / "rows.jsonl.gz", "wt") as f:
        f.write('{"a": 1}\n{"a": 2}\n')
    (root / "body.bin").write_bytes(b"\x00\xffraw")
    files = tuple(
        describe_file(root, name)
        for name in ("data/part-00000.parquet", "data/rows.jsonl.gz", "body.bin")
    )
    manifest = Manifest(
        kind="legal",
        export_id="e1",
        created_at="2026-12-03T00:00:00Z",
        tool_version="0.1.0",
        schema_version=6,
        snapshot_id="s1",
        files=files,
        metadata={"z": 1, "a": {"case": "X-1"}},
    )
    write_manifest(root, manifest)
    return manifest


def test_entries_count_rows_by_kind_of_file(tmp_path: Path) -> None:
    manifest = _export(tmp_path)
    rows = {f.path: f.rows for f in manifest.files}
    assert rows == {"data/part-00000.parquet": 7, "data/rows.jsonl.gz": 2, "body.bin": None}
    body = manifest.file("body.bin")
    assert body is not None
    assert body.sha256 == hashlib.sha256(b"\x00\xffraw").hexdigest()
    assert body.size == 5


def test_rendering_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    manifest = _export(tmp_path)
    reordered = Manifest(
        **{
            **{k: getattr(manifest, k) for k in Manifest.__dataclass_fields__},
            "files": tuple(reversed(manifest.files)),
            "metadata": {"a": {"case": "X-1"}, "z": 1},
        }
    )
    assert render(reordered) == render(manifest) == (tmp_path / MANIFEST_NAME).read_bytes()
    assert render(read_manifest(tmp_path)) == render(manifest)


def test_a_clean_export_verifies(tmp_path: Path) -> None:
    _export(tmp_path)
    result = verify(tmp_path)
    assert result.ok, result.problems
    assert (result.files_checked, result.rows_checked) == (3, 9)


def test_every_kind_of_tampering_is_named(tmp_path: Path) -> None:
    _export(tmp_path)
    (tmp_path / "body.bin").write_bytes(b"\x00\xffRAW")  # same size, other bytes
    (tmp_path / "data" / "rows.jsonl.gz").unlink()
    (tmp_path / "planted.txt").write_text("not ours")
    result = verify(tmp_path)
    assert not result.ok
    problems = "\n".join(result.problems)
    assert "body.bin: sha256" in problems
    assert "data/rows.jsonl.gz: missing" in problems
    assert "planted.txt: not in the manifest" in problems
    assert len(result.problems) == 3


def test_a_replaced_manifest_is_caught_by_its_recorded_sha256(tmp_path: Path) -> None:
    _export(tmp_path)
    recorded = verify(tmp_path).manifest_sha256
    (tmp_path / "body.bin").write_bytes(b"forged")
    manifest = read_manifest(tmp_path)
    forged = tuple(
        describe_file(tmp_path, f.path) if f.path == "body.bin" else f for f in manifest.files
    )
    write_manifest(tmp_path, Manifest(**{**_fields(manifest), "files": forged}))
    assert verify(tmp_path).ok  # consistent with itself ...
    result = verify(tmp_path, expected_manifest_sha256=recorded)
    assert not result.ok  # ... but not the manifest the audit table recorded
    assert "manifest itself was changed" in result.problems[0]


def test_a_manifest_naming_a_file_outside_the_directory_is_refused(tmp_path: Path) -> None:
    _export(tmp_path / "export")
    (tmp_path / "secret").write_bytes(b"x")
    manifest = read_manifest(tmp_path / "export")
    outside = describe_file(tmp_path / "export", "../secret")
    write_manifest(
        tmp_path / "export",
        Manifest(**{**_fields(manifest), "files": (*manifest.files, outside)}),
    )
    result = verify(tmp_path / "export")
    assert result.problems == ("../secret: the manifest names a file outside the export directory",)


def test_missing_or_foreign_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        verify(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text('{"format": "other"}')
    with pytest.raises(ManifestError, match="is not a logorhythms-export-manifest/1"):
        verify(tmp_path)


def _fields(manifest: Manifest) -> dict[str, object]:
    return {k: getattr(manifest, k) for k in Manifest.__dataclass_fields__}
