"""`export dataset s3://…` against a real S3-protocol server on loopback (moto's, as for the
archive): by the command line, the objects are the directory export's bytes, pyarrow reads them
from the bucket and they verify, and a prefix that holds a dataset and a missing bucket are
refused in one line each; an upload killed between objects is completed by the rerun, which
sends only what is missing or not the export's own (rows E19-E20 of tests/README.md)."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from collections.abc import Callable
from pathlib import Path

import pyarrow.fs
import pyarrow.parquet as pq
import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import migrate
from consumers.export.dataset import DatasetOptions, export_dataset
from consumers.export.manifest import MANIFEST_NAME, read_manifest, verify
from consumers.export.objectstore import ObjectStore
from consumers.export.records import Profile
from consumers.export.source import ExportError
from consumers.export.store import ObjectStoreSettings
from consumers.export.upload import Upload
from deploy.cli import build_parser
from tests.integration.export.captured_traffic import private_database
from tests.integration.export.s3_server import ACCESS_KEY_ID, SECRET_KEY, bucket_objects, s3_client

RECORD_KEY = bytes(range(32))
# Ten conversations in shards of four: three shards and the card, then the manifest.
OPTIONS = DatasetOptions(
    profile=Profile.named("open"),
    recipient="Acme Research",
    near_duplicate_threshold=None,
    detect_language=False,
    rows_per_shard=4,
)
TEN_CONVERSATIONS = """
INSERT INTO exchanges (request_id, received_at, completed_at, endpoint, dialect, provider,
    model_requested, model_responded, request_body, request_json_valid, messages, response_text,
    status, outcome, duration_ms)
SELECT toString(generateUUIDv7(number)), now64(6), now64(6), '/v1/chat/completions', 'openai',
    'openai', 'gpt-4o-mini', 'gpt-4o-mini',
    concat('{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "question ',
           toString(number), '"}]}'),
    true, [('user', concat('question ', toString(number)))], concat('answer ', toString(number)),
    200, 'ok', 12.5
FROM numbers(10)
"""
UPLOADED = [
    "README.md",
    "data/train-00000-of-00003.parquet",
    "data/train-00001-of-00003.parquet",
    "data/train-00002-of-00003.parquet",
]


@pytest.fixture
async def clickhouse_url(clickhouse_url: str) -> str:
    """A private database holding ten one-turn conversations, as the loader stores them."""
    url = await private_database(clickhouse_url)
    async with ClickHouse(url) as clickhouse:
        await migrate(clickhouse)
        await clickhouse.command(TEN_CONVERSATIONS)
    return url


class _Store(ObjectStore):
    """The real store, recording each object it uploads; with ``dies_after``, failing like a
    killed process (Ctrl-C, SIGTERM's handler) once that many are uploaded."""

    def __init__(self, url: str, dies_after: int | None = None) -> None:
        super().__init__(url, ObjectStoreSettings.from_environment())
        self.sent: list[str] = []
        self.bytes_reported = 0
        self.dies_after = dies_after

    def upload(
        self, local: Path, relative: str, *, sha256: str, on_bytes: Callable[[int], None]
    ) -> None:
        if len(self.sent) == self.dies_after:
            raise KeyboardInterrupt

        def reported(sent: int) -> None:
            self.bytes_reported += sent
            on_bytes(sent)

        super().upload(local, relative, sha256=sha256, on_bytes=reported)
        self.sent.append(relative)


def _shard_files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }


@pytest.mark.slow  # 4-6 s on the 2 shared cores: two exports, a second S3 client
async def test_a_dataset_in_a_bucket_is_the_directory_export_and_verifies(
    clickhouse_url: str,
    bucket: str,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """E19: by the command line, staged under XDG_CACHE_HOME, the same objects as the directory
    export (same key), read by pyarrow from the bucket, verified; the audit row names the URL;
    staging removed; the full prefix and a missing bucket refused in one line."""
    local = await export_dataset(clickhouse_url, tmp_path / "dir", OPTIONS, record_key=RECORD_KEY)
    url = f"s3://{bucket}/datasets/acme"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    async def command(destination: str) -> tuple[int, str]:
        args = build_parser().parse_args(
            ["export", "dataset", destination, "--clickhouse", clickhouse_url,
             "--record-key", RECORD_KEY.hex(), "--recipient", "Acme Research",
             "--rows-per-shard", "4", "--no-near-dedup", "--no-language"]
        )  # fmt: skip
        # In a thread: the command runs its own event loop (this process's engine, shared).
        status = await asyncio.to_thread(args.func, args)
        captured = capsys.readouterr()
        assert SECRET_KEY not in captured.out + captured.err  # planted in the AWS environment
        return status, captured.out + captured.err

    status, said = await command(url)
    assert status == 0, said
    assert f"wrote 10 conversations to {url} (dataset-" in said
    staged_under = tmp_path / "cache" / "logorhythms" / "exports"
    assert staged_under.is_dir()
    assert list(staged_under.iterdir()) == []  # staged there, removed once verified
    objects = {
        k.removeprefix("datasets/acme/"): v
        for k, v in bucket_objects(bucket).items()
        if not k.endswith(MANIFEST_NAME)
    }
    assert objects == _shard_files(tmp_path / "dir")
    assert sorted(objects) == UPLOADED
    store = _Store(url)
    assert read_manifest(store).files == read_manifest(tmp_path / "dir").files
    async with ClickHouse(clickhouse_url) as clickhouse:
        audited = await clickhouse.rows(
            "SELECT destination, manifest_sha256, rows FROM export_audit FINAL ORDER BY exported_at"
        )
    assert audited[0][0] == local.destination == str((tmp_path / "dir").resolve())
    assert audited[1][0] == url
    assert audited[1][2] == 10
    checked = verify(store, expected_manifest_sha256=audited[1][1])
    assert checked.ok, checked.problems
    assert checked.rows_checked == 10

    # Another S3 client entirely: Arrow's own, reading the shards from the bucket.
    arrow_s3 = pyarrow.fs.S3FileSystem(
        access_key=ACCESS_KEY_ID,
        secret_key=SECRET_KEY,
        endpoint_override=s3_endpoint.removeprefix("http://"),
        scheme="http",
        region="us-east-1",
    )
    table = pq.read_table(f"{bucket}/datasets/acme/data", filesystem=arrow_s3)
    assert table.num_rows == 10
    assert sorted(table.column("conversation_id").to_pylist()) == sorted(
        pq.read_table(tmp_path / "dir" / "data").column("conversation_id").to_pylist()
    )

    # The prefix holds a complete dataset: refused before anything is built or staged.
    status, said = await command(url)
    assert status == 2
    assert said.count("\n") == 1, said
    assert "datasets/acme is not empty (it holds README.md): choose a new or empty prefix" in said
    assert list(staged_under.iterdir()) == []
    status, said = await command(f"s3://{bucket}-missing/x")
    assert status == 2
    assert said.count("\n") == 1, said
    assert f"the bucket '{bucket}-missing' does not exist" in said


@pytest.mark.slow  # 3-6 s on the 2 shared cores: an export and two reruns
async def test_a_killed_upload_is_completed_by_the_rerun(
    clickhouse_url: str, bucket: str, tmp_path: Path
) -> None:
    """E20: killed after two objects, no manifest is there, the private staging directory is
    kept. Meanwhile one object is overwritten from elsewhere and one damaged while keeping its
    recorded sha256: the rerun sends only the missing and the overwritten ones, then the
    manifest, and its check finds the damaged one; the next rerun sends everything again and
    the result verifies."""
    url = f"s3://{bucket}/ds"
    staging = tmp_path / "staging"
    with pytest.raises(KeyboardInterrupt):
        await export_dataset(
            clickhouse_url, staging, OPTIONS, record_key=RECORD_KEY,
            upload=Upload(_Store(url, dies_after=2)),
        )  # fmt: skip
    assert sorted(bucket_objects(bucket)) == [f"ds/{name}" for name in UPLOADED[:2]]
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700
    # The card overwritten without a sha256 (not the export's own); a shard damaged, keeping
    # the sha256 recorded with it (a claim the read-back check does not take on trust).
    s3_client().put_object(Bucket=bucket, Key=f"ds/{UPLOADED[0]}", Body=b"not the card")
    claimed = hashlib.sha256((staging / UPLOADED[1]).read_bytes()).hexdigest()
    s3_client().put_object(
        Bucket=bucket, Key=f"ds/{UPLOADED[1]}", Body=b"damaged", Metadata={"sha256": claimed}
    )

    rerun = _Store(url)
    with pytest.raises(ExportError, match=f"{UPLOADED[1]}: size 7 bytes"):
        await export_dataset(
            clickhouse_url, staging, OPTIONS, record_key=RECORD_KEY, upload=Upload(rerun)
        )
    assert rerun.sent == [UPLOADED[0], *UPLOADED[2:]]  # UPLOADED[1] claimed its sha256

    last = _Store(url)
    result = await export_dataset(
        clickhouse_url, staging, OPTIONS, record_key=RECORD_KEY, upload=Upload(last)
    )
    assert last.sent == UPLOADED
    checked = verify(last, expected_manifest_sha256=result.manifest_sha256)
    assert checked.ok, checked.problems
    assert checked.files_checked == len(UPLOADED)
    assert last.bytes_reported == sum(f.size for f in read_manifest(last).files)
    assert not staging.exists()
