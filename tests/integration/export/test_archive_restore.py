"""`logorhythms archive` / `restore`: captured traffic archived as day-partitioned Parquet,
incrementally, and restored into a new embedded ClickHouse with identical rows and checksums
per table and day, the rollup rebuilt identically; a tampered archive or a non-empty target is
refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import migrate
from consumers.export.archive import DAY_OF, archive, day_file, day_summaries
from consumers.export.manifest import read_manifest, verify
from consumers.export.restore import restore
from consumers.export.source import ExportError
from tests.integration.conftest import ProxyFactory
from tests.integration.export.captured_traffic import capture, private_database, send

ROLLUP = (
    "SELECT minute, provider, model, endpoint, status_class, outcome, stream, "
    "sum(exchanges) AS n, sum(failed) AS f, sum(prompt_tokens) AS pt, "
    "sum(completion_tokens) AS ct, sum(bytes_in) AS bi, sum(bytes_out) AS bo, "
    "max(duration_ms_max) AS dmax, "
    "quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_ms_quantiles) AS ttft, "
    "quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(duration_ms_quantiles) AS duration, "
    "uniqMerge(clients) AS c FROM exchanges_per_minute GROUP BY ALL ORDER BY ALL"
)
# The columns the engine derives on insert, which `SELECT *` (and so the row checksum) omits.
DERIVED = (
    "SELECT sum(cityHash64(request_id, prompt_group_hash, client_ip_addr, status_class, model)) "
    "FROM exchanges FINAL"
)
# A second restore into the restored engine (refused: it is not empty), then what that engine
# holds, read by a separate process (one engine directory per process).
READ_RESTORED = f"""
import asyncio, json, sys
from pathlib import Path
from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import migrate
from consumers.export.archive import DAY_OF, day_summaries
from consumers.export.restore import restore
from consumers.export.source import ExportError

async def main():
    try:
        await restore(Path(sys.argv[2]), sys.argv[1])
        refused = ""
    except ExportError as exc:
        refused = str(exc)
    async with ClickHouse(sys.argv[1]) as c:
        days = {{t: {{d: [s.rows, s.checksum] for d, s in (await day_summaries(c, t)).items()}}
                for t in DAY_OF}}
        rollup = (await c.raw({ROLLUP!r}, fmt="JSONEachRow")).decode()
        derived = (await c.rows({DERIVED!r}))[0][0]
        found = {{"days": days, "rollup": rollup, "derived": derived, "refused": refused}}
        print(json.dumps(found))

asyncio.run(main())
"""


@pytest.fixture
async def clickhouse_url(clickhouse_url: str) -> str:
    return await private_database(clickhouse_url)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=90, check=False
    )


async def _source_days(clickhouse: ClickHouse) -> dict[str, dict[str, list[object]]]:
    return {
        t: {d: [s.rows, s.checksum] for d, s in (await day_summaries(clickhouse, t)).items()}
        for t in DAY_OF
    }


@pytest.mark.slow  # 45 s on a loaded 2-core machine: capture, 3 archive runs, 2 processes
async def test_archive_is_incremental_and_restores_identically(
    pipeline_factory: ProxyFactory, clickhouse_url: str, tmp_path: Path
) -> None:
    pipeline, sent = await capture(pipeline_factory)
    source = pipeline.clickhouse
    archived = tmp_path / "archive"

    await archive(clickhouse_url, archived)
    first = read_manifest(archived)
    assert verify(archived).ok
    data_tables = ("requests_raw", "chunks_raw", "completions_raw", "exchanges")
    live = await _source_days(source)
    for table in data_tables:
        assert live[table], table
        assert {
            d: [v["rows"], v["checksum"]] for d, v in first.metadata["tables"][table].items()
        } == live[table]
        for day in live[table]:
            assert (archived / day_file(table, day)).is_file()
    assert sum(v[0] for v in live["requests_raw"].values()) == len(sent)

    # Unchanged days are not written again (only the audit trail, which the first run grew).
    stamps = {p: p.stat().st_mtime_ns for p in archived.rglob("*.parquet")}
    await archive(clickhouse_url, archived)
    second = read_manifest(archived)
    assert second.metadata["this_run"]["days_unchanged"] >= len(data_tables)
    rewritten = {p for p in stamps if p.stat().st_mtime_ns != stamps[p]}
    assert all("table=export_audit" in str(p) for p in rewritten), rewritten

    # A new exchange changes its day, which the next run writes again.
    await send(
        pipeline, client_ip="192.0.2.1", key="sk-late-key-1234567890", stream=False, text="late"
    )
    await pipeline.wait_for(
        "SELECT count() FROM exchanges FINAL", {}, lambda rows: rows[0][0] == len(sent) + 1
    )
    await archive(clickhouse_url, archived)
    third = read_manifest(archived)
    live = await _source_days(source)
    for table in data_tables:
        assert {
            d: [v["rows"], v["checksum"]] for d, v in third.metadata["tables"][table].items()
        } == live[table]
    assert third.snapshot_id != first.snapshot_id

    # Restore into a new engine directory, by the command line, in its own process.
    restored = f"chdb://{tmp_path / 'restored'}"
    done = _run("-m", "deploy.cli", "restore", str(archived), "--clickhouse", restored)
    assert done.returncode == 0, done.stderr
    assert "every table's rows and checksums per day match the archive" in done.stdout
    found = json.loads(_run("-c", READ_RESTORED, restored, str(archived)).stdout)
    for table in data_tables:
        assert found["days"][table] == live[table], table
    assert found["days"]["export_audit"] == {
        d: [v["rows"], v["checksum"]] for d, v in third.metadata["tables"]["export_audit"].items()
    }
    assert found["rollup"] == (await source.raw(ROLLUP, fmt="JSONEachRow")).decode()
    assert found["rollup"].count("\n") >= 1
    assert found["derived"] == (await source.rows(DERIVED))[0][0]
    # The second restore into the same, no longer empty, engine was refused before any insert
    # (the counts above are after it).
    assert "already holds" in found["refused"]


async def test_a_tampered_archive_is_not_restored(clickhouse_url: str, tmp_path: Path) -> None:
    async with ClickHouse(clickhouse_url) as clickhouse:
        await migrate(clickhouse)
        await clickhouse.command(
            "INSERT INTO chunks_raw (request_id, seq, data) "
            "SELECT toString(generateUUIDv7(number)), 1, randomString(64) FROM numbers(100)"
        )
    archived = tmp_path / "archive"
    await archive(clickhouse_url, archived)
    victim = next(archived.glob("table=chunks_raw/day=*/part-00000.parquet"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    target = tmp_path / "restored"
    with pytest.raises(ExportError) as refused:
        await restore(archived, f"chdb://{target}")
    assert "does not match its manifest, nothing restored" in str(refused.value)
    assert victim.relative_to(archived).as_posix() in str(refused.value)
    assert not target.exists()
