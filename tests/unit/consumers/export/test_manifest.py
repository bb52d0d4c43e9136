"""The export manifest: deterministic, and `verify` names every kind of mismatch."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consumers.export import manifest as manifest_module
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


def _manifest_with(root: Path, **changes: object) -> None:
    """A manifest whose raw JSON has ``changes`` applied (``files`` replaced whole)."""
    _export(root)
    raw = json.loads((root / MANIFEST_NAME).read_bytes())
    raw.update(changes)
    (root / MANIFEST_NAME).write_text(json.dumps(raw))


_GOOD = {"path": "body.bin", "sha256": hashlib.sha256(b"\x00\xffraw").hexdigest(), "size": 5}


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"files": "body.bin"}, "files is str, not a list"),
        ({"files": [["body.bin"]]}, "a file entry is list"),
        ({"files": [{**_GOOD, "path": 7}]}, "a file's path is 7, not a string"),
        ({"files": [{**_GOOD, "path": None}]}, "a file's path is None"),
        ({"files": [{**_GOOD, "sha256": "abc"}]}, "is not 64 hex digits"),
        ({"files": [{**_GOOD, "size": "5"}]}, "size is '5', not a count"),
        ({"files": [{**_GOOD, "size": -1}]}, "size is -1, not a count"),
        ({"files": [{**_GOOD, "size": True}]}, "size is True, not a count"),
        ({"files": [{**_GOOD, "rows": "3"}]}, "rows is '3', not a count"),
        ({"files": [_GOOD, _GOOD]}, "it lists body.bin twice"),
        ({"files": [_GOOD, {**_GOOD, "size": 6}]}, "it lists body.bin twice"),
        ({"metadata": ["tables"]}, "metadata is list, not an object"),
        ({"schema_version": "6"}, "schema_version is '6'"),
    ],
)
def test_a_manifest_of_wrong_types_is_refused_in_one_line(
    tmp_path: Path, changes: dict[str, object], said: str
) -> None:
    _manifest_with(tmp_path, **changes)
    with pytest.raises(ManifestError, match=said) as refused:
        verify(tmp_path)
    assert "\n" not in str(refused.value)
    assert "do not use this export" in str(refused.value)


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b""])
def test_a_manifest_that_is_no_json_object_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / MANIFEST_NAME).write_bytes(content)
    with pytest.raises(ManifestError, match=r"cannot be read as JSON|is a JSON") as refused:
        verify(tmp_path)
    assert "\n" not in str(refused.value)


def test_a_huge_manifest_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _export(tmp_path)
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(ManifestError, match="over the 100 a manifest may be"):
        verify(tmp_path)


def test_nothing_is_read_through_a_link_or_from_a_fifo(tmp_path: Path) -> None:
    """Attack: links in an export directory to a FIFO outside it (opening one blocks for ever,
    reading /dev/zero never ends) and to a file outside it. Each is reported, none opened."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe")
    root = tmp_path / "export"
    _export(root)
    (root / "data" / "part-00000.parquet").unlink()
    (root / "data" / "part-00000.parquet").symlink_to(outside / "pipe")
    (root / "planted").symlink_to(outside)
    os.mkfifo(root / "body.bin.fifo")
    result = verify(root)
    problems = "\n".join(result.problems)
    assert "data/part-00000.parquet: the manifest names a file outside" in problems
    assert "planted: not in the manifest" in problems
    assert "body.bin.fifo: not in the manifest" in problems
    assert len(result.problems) == 3

    # A link to a file inside the directory is refused too: an export holds regular files.
    (root / "data" / "part-00000.parquet").unlink()
    (root / "data" / "part-00000.parquet").symlink_to(root / "body.bin")
    (root / "planted").unlink()
    (root / "body.bin.fifo").unlink()
    assert verify(root).problems == (
        "data/part-00000.parquet: cannot be checked: data/part-00000.parquet is a symbolic link: "
        "an export holds regular files only, and nothing is read through a link",
    )

    # The manifest itself: a link to the FIFO is refused in one line, never opened.
    (root / MANIFEST_NAME).unlink()
    (root / MANIFEST_NAME).symlink_to(outside / "pipe")
    with pytest.raises(ManifestError, match="is a symbolic link"):
        verify(root)


def test_names_with_control_characters_are_shown_escaped(tmp_path: Path) -> None:
    """Attack: a file, and a manifest entry, named to forge verify's verdict line. Every
    problem is one line, the name escaped."""
    _export(tmp_path)
    (tmp_path / "x\nOK: 3 files, 9 rows checked").write_text("planted")
    result = verify(tmp_path)
    assert result.problems == ('"x\\nOK: 3 files, 9 rows checked": not in the manifest',)

    _manifest_with(tmp_path / "listed", files=[_GOOD, {**_GOOD, "path": "b\nOK: 1 files"}])
    problems = verify(tmp_path / "listed").problems
    assert '"b\\nOK: 1 files": the manifest names a file outside the export directory' in problems
    assert all("\n" not in problem for problem in problems)


def test_an_export_reached_through_a_link_verifies_like_the_directory(tmp_path: Path) -> None:
    """Reading (verify, restore) through a link to the export is the user's choice: unlisted
    files are still found."""
    _export(tmp_path / "export")
    (tmp_path / "link").symlink_to(tmp_path / "export")
    assert verify(tmp_path / "link").ok
    (tmp_path / "export" / "planted.txt").write_text("not ours")
    assert verify(tmp_path / "link").problems == ("planted.txt: not in the manifest",)


def test_an_empty_name_is_shown_quoted(tmp_path: Path) -> None:
    _manifest_with(tmp_path, files=[_GOOD, {**_GOOD, "path": ""}])
    problems = verify(tmp_path).problems
    assert '"": the manifest names a file outside the export directory' in problems
