"""Export locations: S3 settings from the command line and the AWS variables, the refusal of an
endpoint URL holding credentials (never echoed), bucket URLs, manifest paths that leave the
root, which leftovers an archive accepts as an unfinished run of its own, and directory
destinations that are links, files or hold links (refused, never written through)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consumers.export.archive import _previous
from consumers.export.objectstore import ObjectStore
from consumers.export.source import ExportError
from consumers.export.store import (
    DirectoryStore,
    ObjectStoreSettings,
    StoreError,
    is_inside,
    staged_path,
)


def test_command_line_values_come_before_the_aws_variables() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://general:9000",
        "AWS_ENDPOINT_URL_S3": "http://s3-only:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    assert ObjectStoreSettings.from_environment(env=env) == ObjectStoreSettings(
        endpoint_url="http://s3-only:9000", region="eu-west-1"
    )
    given = ObjectStoreSettings.from_environment(
        endpoint_url="https://minio:9000", region="us-east-2", env=env
    )
    assert given == ObjectStoreSettings(endpoint_url="https://minio:9000", region="us-east-2")
    assert ObjectStoreSettings.from_environment(env={}) == ObjectStoreSettings()


def test_an_endpoint_holding_credentials_is_refused_without_echoing_them() -> None:
    secret = "wJalrXUtnFEMI-planted-secret"
    with pytest.raises(StoreError) as refused:
        ObjectStore("s3://bucket/x", ObjectStoreSettings(endpoint_url=f"http://AKID:{secret}@h:1"))
    assert secret not in str(refused.value)
    assert "AKID" not in str(refused.value)
    assert "AWS_PROFILE" in str(refused.value)


@pytest.mark.parametrize("endpoint", ["ftp://host:21", "host:9000", "http://"])
def test_an_endpoint_that_is_not_http_is_refused(endpoint: str) -> None:
    with pytest.raises(StoreError, match=r"http\(s\)://HOST"):
        ObjectStore("s3://bucket/x", ObjectStoreSettings(endpoint_url=endpoint))


def test_bucket_urls() -> None:
    settings = ObjectStoreSettings(endpoint_url="http://127.0.0.1:9")
    assert ObjectStore("s3://bkt/a/b/", settings).location == "s3://bkt/a/b"
    assert ObjectStore("s3://bkt", settings).location == "s3://bkt"
    with pytest.raises(StoreError, match="names no bucket"):
        ObjectStore("s3:///prefix", settings)


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("a/b.parquet", True),
        ("table=x/day=2026-01-02/part-00000.parquet", True),
        ("../x", False),
        ("/etc/passwd", False),
        ("a/../../x", False),
        ("", False),
        ("a//b", False),  # one key in a bucket, another file on disk
        ("a/./b", False),
        ("./a", False),
        ("a/", False),
        (".", False),
        ("a\x00b", False),  # NUL ends the path early
        ("a\nOK: 3 files", False),  # a newline forges a line of output
        ("a\x7fb", False),
    ],
)
def test_manifest_paths_stay_under_the_root(path: str, inside: bool) -> None:
    assert is_inside(path) is inside


def test_an_archive_accepts_its_own_leftovers_and_refuses_foreign_files(tmp_path: Path) -> None:
    unfinished = tmp_path / "unfinished"
    day = unfinished / "table=chunks_raw/day=2026-01-02"
    day.mkdir(parents=True)
    (day / "part-00000.parquet").write_bytes(b"PAR1")
    (day / ".tmp.part-00000.parquet").write_bytes(b"PAR1")
    assert _previous(DirectoryStore(unfinished)) is None

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"holds files but no manifest.json \(e.g. notes.txt\)"):
        _previous(DirectoryStore(foreign))


def test_a_destination_that_is_a_link_or_a_file_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    with pytest.raises(StoreError, match="is a symbolic link") as refused:
        DirectoryStore(tmp_path / "link").prepare()
    assert "\n" not in str(refused.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="exists and is not a directory"):
        DirectoryStore(tmp_path / "file").prepare()
    with pytest.raises(StoreError, match="cannot be created"):
        DirectoryStore(tmp_path / "file" / "below").prepare()
    assert list(elsewhere.iterdir()) == []


def test_a_new_destination_is_private(tmp_path: Path) -> None:
    DirectoryStore(tmp_path / "new").prepare()
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


def test_links_and_special_files_are_listed_never_followed(tmp_path: Path) -> None:
    """A destination holding only a link to a directory is not empty (a write into
    ``exchanges/...`` would land in the link's target); nothing is read through a link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    root = tmp_path / "export"
    root.mkdir()
    (root / "exchanges").symlink_to(outside)
    (root / "data.parquet").symlink_to(outside / "secret")
    os.mkfifo(root / "pipe")
    store = DirectoryStore(root)
    assert store.files() == ["data.parquet", "exchanges", "pipe"]
    with pytest.raises(StoreError, match="symbolic link"):
        store.size("data.parquet")
    with pytest.raises(StoreError, match="symbolic link"):
        store.read_bytes("data.parquet")
    with pytest.raises(StoreError, match="symbolic link"):
        store.open_read("data.parquet")
    with pytest.raises(StoreError, match="not a regular file"):
        store.size("pipe")
    with pytest.raises(StoreError, match="not a regular file"):
        store.read_bytes("pipe")  # a FIFO with no writer: opening it must not block


def test_a_planted_link_at_a_staging_name_is_not_written_through(tmp_path: Path) -> None:
    """Attack: links where an archive run stages a day file or its manifest (names it accepts
    as its own leftovers). The run replaces them; the link's target keeps its bytes."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    root = tmp_path / "archive"
    day = root / "table=chunks_raw/day=2026-01-02"
    day.mkdir(parents=True)
    (day / ".tmp.part-00000.parquet").symlink_to(victim)
    (root / ".manifest.json.tmp").symlink_to(victim)
    staged = staged_path(root, "table=chunks_raw/day=2026-01-02/part-00000.parquet")
    staged.write_bytes(b"day rows")  # as the engine's output is written
    DirectoryStore(root).put_bytes("manifest.json", b"{}")
    assert victim.read_bytes() == b"precious"
    assert not staged.is_symlink()
    assert (root / "manifest.json").read_bytes() == b"{}"


def test_an_archive_holding_a_link_is_not_added_to(tmp_path: Path) -> None:
    """Attack: a link planted in an existing archive, where the next run writes a day."""
    root = tmp_path / "archive"
    root.mkdir()
    (root / "manifest.json").write_text(
        '{"format": "logorhythms-export-manifest/1", "kind": "archive", "export_id": "a", '
        '"created_at": "", "tool": {"version": "0"}, "schema_version": 6, "snapshot_id": "", '
        '"files": []}'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "table=chunks_raw").symlink_to(elsewhere)
    with pytest.raises(StoreError, match="table=chunks_raw is a symbolic link"):
        _previous(DirectoryStore(root))
