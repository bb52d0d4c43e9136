"""`archive`, `restore`, `export legal` and `export verify` with s3:// locations, against a real
S3-protocol server on loopback (moto's server, one per module, like the fake LLM upstreams): the
round trip gives identical rows and checksums, a second archive is incremental, a tampered or
unlisted object is found, a legal export lands whole, an archive that dies half-way is
completed by the next run, a missing bucket and an unreachable endpoint are one line each, and
the credentials never leave the AWS environment (rows E12-E18 of tests/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import migrate
from consumers.export.archive import DAY_OF, archive, day_summaries
from consumers.export.legal import LegalQuery, export_legal
from consumers.export.manifest import MANIFEST_NAME, ManifestError, read_manifest, verify
from consumers.export.objectstore import ObjectStore
from consumers.export.restore import restore
from consumers.export.source import ExportError
from consumers.export.store import ObjectStoreSettings, StoreError
from tests.integration.export.captured_traffic import private_database
from tests.integration.export.s3_server import (
    ACCESS_KEY_ID,
    SECRET_KEY,
    bucket_objects,
    free_port,
    moto_server,
    s3_client,
)

# Restore into a new engine directory by the command line, then report what that engine holds,
# in one process of its own (one engine directory per process).
RESTORE_AND_READ = """
import asyncio, contextlib, io, json, sys
from consumers.clickhouse.client import ClickHouse
from consumers.export.archive import DAY_OF, day_summaries
from deploy.cli import main

err = io.StringIO()
with contextlib.redirect_stderr(err):
    try:
        main(["restore", sys.argv[2], "--clickhouse", sys.argv[1]])
        status = 0
    except SystemExit as exc:
        status = exc.code

async def read():
    async with ClickHouse(sys.argv[1]) as c:
        return {t: {d: [s.rows, s.checksum] for d, s in (await day_summaries(c, t)).items()}
                for t in DAY_OF}

print(json.dumps({"status": status, "stderr": err.getvalue(), "days": asyncio.run(read())}))
"""


@pytest.fixture
async def clickhouse_url(clickhouse_url: str) -> str:
    return await private_database(clickhouse_url)


def _store(url: str) -> ObjectStore:
    return ObjectStore(url, ObjectStoreSettings.from_environment())


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=90, check=False
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return _python("-m", "deploy.cli", *args)


def _files_under(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def _insert(clickhouse_url: str, rows: int, seq: int = 1) -> None:
    async with ClickHouse(clickhouse_url) as clickhouse:
        await migrate(clickhouse)
        await clickhouse.command(
            "INSERT INTO chunks_raw (request_id, seq, data) "
            "SELECT toString(generateUUIDv7(number)), {seq:UInt32}, randomString(64) "
            "FROM numbers({rows:UInt64})",
            {"rows": rows, "seq": seq},
        )
        await clickhouse.command(
            "INSERT INTO completions_raw (request_id, status) "
            "SELECT toString(generateUUIDv7(number)), 200 FROM numbers({rows:UInt64})",
            {"rows": rows},
        )


async def _days(clickhouse_url: str) -> dict[str, dict[str, list[object]]]:
    async with ClickHouse(clickhouse_url) as clickhouse:
        return {
            t: {d: [s.rows, s.checksum] for d, s in (await day_summaries(clickhouse, t)).items()}
            for t in DAY_OF
        }


@pytest.mark.slow  # ~10 s: three archive runs, a restore in its own process
async def test_s3_archive_is_incremental_and_restores_identically(
    clickhouse_url: str, bucket: str, tmp_path: Path
) -> None:
    """E13: archive to s3://, unchanged days skipped, restore gives identical rows/checksums."""
    url = f"s3://{bucket}/logorhythms/archive"
    await _insert(clickhouse_url, 200)
    await archive(clickhouse_url, _store(url))
    first = read_manifest(_store(url))
    assert verify(_store(url)).ok
    keys = set(bucket_objects(bucket))
    assert f"logorhythms/archive/{MANIFEST_NAME}" in keys
    assert any(k.startswith("logorhythms/archive/table=chunks_raw/day=") for k in keys)

    before = {k: v for k, v in bucket_objects(bucket).items() if "table=chunks_raw" in k}
    await archive(clickhouse_url, _store(url))
    second = read_manifest(_store(url))
    # Only the audit trail (grown by the first run) is written again.
    assert second.metadata["this_run"]["days_written"] == 1
    assert second.metadata["this_run"]["days_unchanged"] >= 2
    assert {k: v for k, v in bucket_objects(bucket).items() if "table=chunks_raw" in k} == before

    await _insert(clickhouse_url, 5, seq=2)
    await archive(clickhouse_url, _store(url))
    third = read_manifest(_store(url))
    assert third.snapshot_id not in (first.snapshot_id, second.snapshot_id)
    live = await _days(clickhouse_url)
    assert {
        d: [v["rows"], v["checksum"]] for d, v in third.metadata["tables"]["chunks_raw"].items()
    } == live["chunks_raw"]

    restored = f"chdb://{tmp_path / 'restored'}"
    done = _python("-c", RESTORE_AND_READ, restored, url)
    assert done.returncode == 0, done.stderr
    said, _, report = done.stdout.strip().rpartition("\n")
    assert "every table's rows and checksums per day match the archive" in said
    found = json.loads(report)
    assert found["status"] in (0, None), found["stderr"] + done.stderr
    for table in ("requests_raw", "chunks_raw", "completions_raw", "exchanges"):
        assert found["days"][table] == live[table], table
    assert sum(rows for rows, _ in found["days"]["chunks_raw"].values()) == 205
    assert found["days"]["export_audit"] == {
        d: [v["rows"], v["checksum"]] for d, v in third.metadata["tables"]["export_audit"].items()
    }


async def test_verify_finds_a_tampered_or_unlisted_object(
    clickhouse_url: str, bucket: str, tmp_path: Path
) -> None:
    """E14: a changed object and an object the manifest does not list fail verify and restore."""
    url = f"s3://{bucket}/a"
    await _insert(clickhouse_url, 50)
    await archive(clickhouse_url, _store(url))
    assert verify(_store(url)).ok
    victim = next(k for k in bucket_objects(bucket) if "table=chunks_raw" in k)
    data = bytearray(bucket_objects(bucket)[victim])
    data[len(data) // 2] ^= 0x01
    s3_client().put_object(Bucket=bucket, Key=victim, Body=bytes(data))
    s3_client().put_object(Bucket=bucket, Key="a/table=chunks_raw/extra.parquet", Body=b"x")

    checked = _cli("export", "verify", url)
    assert checked.returncode == 1, checked.stderr
    relative = victim.removeprefix("a/")
    assert f"{relative}: sha256" in checked.stdout
    assert "table=chunks_raw/extra.parquet: not in the manifest" in checked.stdout
    target = tmp_path / "restored"
    with pytest.raises(ExportError, match="does not match its manifest, nothing restored"):
        await restore(_store(url), f"chdb://{target}")
    assert not target.exists()


async def test_object_keys_that_leave_the_local_copy_are_refused(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """E22, attack: objects under the archive's prefix whose keys, as paths, lead out of the
    local copy a restore makes (``..``; an empty segment, which makes the rest absolute) or name
    a file and a directory at once. The restore is refused before any object is copied: no file
    outside the copy, the target never created. Fails when keys are copied as paths."""
    copies = tmp_path / "tmp"
    copies.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(copies))  # where the local copy is made
    url = f"s3://{bucket}/a"
    s3_client().put_object(Bucket=bucket, Key="a/manifest.json", Body=b"{}")  # refused later
    absolute = tmp_path / "written-by-absolute-key"
    hostile = {
        "..": ("a/../escaped-by-dots", copies / "escaped-by-dots"),
        "//": (f"a/{absolute}", absolute),
    }
    for key, _where in hostile.values():
        s3_client().put_object(Bucket=bucket, Key=key, Body=b"planted")
    target = tmp_path / "restored"
    for kind, (key, where) in hostile.items():
        with pytest.raises(StoreError, match="nothing is copied") as refused:
            await restore(_store(url), f"chdb://{target}")
        assert "\n" not in str(refused.value)
        assert not where.exists(), kind
        assert not target.exists(), kind
        assert list(copies.iterdir()) == [], kind  # not a single object copied
        s3_client().delete_object(Bucket=bucket, Key=key)
    # A key that is a file and a directory at once.
    s3_client().put_object(Bucket=bucket, Key="a/manifest.json/x", Body=b"planted")
    with pytest.raises(StoreError, match=r"\(manifest.json\): nothing is copied"):
        await restore(_store(url), f"chdb://{target}")
    assert not target.exists()


class _DiesAfter(ObjectStore):
    """The real store, failing like a killed process once ``puts`` objects are written."""

    def __init__(self, url: str, puts: int) -> None:
        super().__init__(url, ObjectStoreSettings.from_environment())
        self.left = puts

    def put(self, staged: Path, relative: str) -> None:
        if self.left == 0:
            raise KeyboardInterrupt  # what Ctrl-C or SIGTERM's handler raises mid-run
        self.left -= 1
        super().put(staged, relative)


async def test_an_archive_killed_half_way_is_completed_by_the_next_run(
    clickhouse_url: str, bucket: str
) -> None:
    """E15: no manifest until every object is in place; the next run completes the archive."""
    url = f"s3://{bucket}/k"
    await _insert(clickhouse_url, 30)
    with pytest.raises(KeyboardInterrupt):
        await archive(clickhouse_url, _DiesAfter(url, puts=1))
    left = bucket_objects(bucket)
    assert len(left) == 1
    assert f"k/{MANIFEST_NAME}" not in left
    with pytest.raises(ManifestError, match=r"manifest\.json does not exist"):
        verify(_store(url))

    await archive(clickhouse_url, _store(url))
    result = verify(_store(url))
    assert result.ok, result.problems
    assert result.files_checked >= 2


async def test_a_legal_export_to_s3_verifies_and_holds_the_bytes(
    clickhouse_url: str, bucket: str
) -> None:
    """E18: `export legal s3://…` puts every file, the manifest last; it verifies; the audit row
    names the bucket; a non-empty prefix is refused."""
    async with ClickHouse(clickhouse_url) as clickhouse:
        await migrate(clickhouse)
        await clickhouse.command(
            "INSERT INTO requests_raw (request_id, received_at, client_ip, body) "
            "SELECT toString(generateUUIDv7(number)), now64(6), '192.0.2.' || toString(number), "
            "'body-' || toString(number) FROM numbers(3)"
        )
        ids = [r[0] for r in await clickhouse.rows("SELECT request_id FROM requests_raw")]
        await clickhouse.command(
            "INSERT INTO chunks_raw (request_id, seq, data, delivered) "
            "SELECT request_id, 1, 'chunk of ' || request_id, true FROM requests_raw"
        )
    url = f"s3://{bucket}/case-7"
    query = LegalQuery.from_arguments(client_ips=["192.0.2.0/24"])
    await export_legal(clickhouse_url, _store(url), query=query, case_reference="CASE-7")
    objects = bucket_objects(bucket)
    manifest = read_manifest(_store(url))
    assert set(objects) == {f"case-7/{f.path}" for f in manifest.files} | {"case-7/manifest.json"}
    assert sorted(manifest.metadata["request_ids"]) == sorted(ids)
    for request_id in ids:
        folder = f"case-7/exchanges/{request_id}"
        assert objects[f"{folder}/chunks/000001.bin"] == f"chunk of {request_id}".encode()
        assert objects[f"{folder}/request.body"].startswith(b"body-")
    assert verify(_store(url)).ok
    async with ClickHouse(clickhouse_url) as clickhouse:
        audited = await clickhouse.rows("SELECT destination FROM export_audit WHERE kind = 'legal'")
    assert audited == [(url,)]
    with pytest.raises(ExportError, match="is not empty"):
        await export_legal(clickhouse_url, _store(url), query=query, case_reference="CASE-8")


@pytest.mark.slow  # ~11 s: two command-line runs (one waits out the client's retries), a server
def test_a_missing_bucket_an_unreachable_endpoint_and_access_denied_are_one_line_each(
    aws_environment: dict[str, str], tmp_path: Path
) -> None:
    """E16: what to do, in one line, exit status 2, no traceback."""
    missing = _cli(
        "archive", "s3://no-such-bucket-here/x", "--clickhouse", f"chdb://{tmp_path / 'ch'}"
    )
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1, missing.stderr
    assert "bucket 'no-such-bucket-here' does not exist" in missing.stderr
    assert "aws s3 mb s3://no-such-bucket-here" in missing.stderr

    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = _cli("export", "verify", "s3://some-bucket/x", "--s3-endpoint", closed)
    assert unreachable.returncode == 2
    assert unreachable.stderr.count("\n") == 1, unreachable.stderr
    assert f"cannot reach the S3 endpoint {closed}" in unreachable.stderr
    assert "Traceback" not in missing.stderr + unreachable.stderr

    # A server that checks credentials (moto with IAM on) does not know the planted key.
    with moto_server(tmp_path / "iam.log", INITIAL_NO_AUTH_ACTION_COUNT="0") as checking:
        store = ObjectStore("s3://some-bucket/x", ObjectStoreSettings(endpoint_url=checking))
        with pytest.raises(StoreError) as denied:
            store.files()
    assert str(denied.value).startswith("access denied while listing s3://some-bucket/x")
    assert "s3:ListBucket" in str(denied.value)


async def test_credentials_appear_in_no_output(
    clickhouse_url: str,
    bucket: str,
    aws_environment: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """E17: the planted secret key is in no object, manifest, audit row, log line or message,
    for a successful archive and for failing ones (an endpoint URL with credentials in it is
    refused without being echoed)."""
    caplog.set_level("DEBUG")  # botocore's and s3fs's own debug logging included
    url = f"s3://{bucket}/c"
    await _insert(clickhouse_url, 20)
    await archive(clickhouse_url, _store(url))
    endpoint = aws_environment["AWS_ENDPOINT_URL"]
    with_userinfo = endpoint.replace("http://", f"http://{ACCESS_KEY_ID}:{SECRET_KEY}@")
    try:
        ObjectStore(url, ObjectStoreSettings(endpoint_url=with_userinfo)).files()
        refusal = ""
    except StoreError as exc:
        refusal = str(exc)
    failures = [
        _cli("archive", f"s3://{bucket}-missing/c", "--clickhouse", f"chdb://{tmp_path / 'x'}"),
        _cli("restore", url, "--s3-endpoint", with_userinfo, "--clickhouse", "chdb:///none"),
    ]
    async with ClickHouse(clickhouse_url) as clickhouse:
        audit = await clickhouse.raw("SELECT * FROM export_audit", fmt="TSV")
    assert b"s3://" in audit  # the destination is recorded, without credentials
    captured = capsys.readouterr()
    outputs = {
        **{f"object {k}": v for k, v in bucket_objects(bucket).items()},
        "export_audit": audit,
        "log": caplog.text.encode(),
        "stdout/stderr": (captured.out + captured.err).encode(),
        "refusal": refusal.encode(),
        **{f"cli {i}": (f.stdout + f.stderr).encode() for i, f in enumerate(failures)},
        **_files_under(tmp_path),
    }
    leaks = [where for where, data in outputs.items() if SECRET_KEY.encode() in data]
    assert leaks == []
    assert "holds credentials" in refusal
    assert all(f.returncode == 2 for f in failures), [f.stderr for f in failures]
    assert len(outputs) > 6
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY  # it was there to leak
