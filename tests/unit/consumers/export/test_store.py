"""Export locations: S3 settings from the command line and the AWS variables, the refusal of an
endpoint URL holding credentials (never echoed), bucket URLs, manifest paths that leave the
root, and which leftovers an archive accepts as an unfinished run of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.export.archive import _previous
from consumers.export.objectstore import ObjectStore
from consumers.export.source import ExportError
from consumers.export.store import DirectoryStore, ObjectStoreSettings, StoreError, is_inside


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
    [("a/b.parquet", True), ("../x", False), ("/etc/passwd", False), ("a/../../x", False)],
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
