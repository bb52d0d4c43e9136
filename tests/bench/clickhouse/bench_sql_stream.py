"""Benchmark: stream narrow results through the analysts' SQL endpoint to clickhouse-connect.

Run by hand (not in CI), from the repository root:

    python -m tests.bench.clickhouse.bench_sql_stream --rows 1000000 10000000

For each size the endpoint runs in a process of its own (a fresh one per size, so its peak RSS,
VmHWM, belongs to that size alone); clickhouse-connect reads the result with
``query_row_block_stream`` (Native format, streamed) and counts rows. Two sources: the
``numbers()`` table function, and a MergeTree table of the same numbers created in the
endpoint's directory before it starts serving. Prints one Markdown table row per run.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import clickhouse_connect

ROOT = Path(__file__).resolve().parents[3]

# The endpoint process: fill the table, then serve until killed.
_SERVER = """
import asyncio, sys
import chdb
from consumers.clickhouse.analyst import AnalystEngine
from consumers.clickhouse.sqlservice import create_sql_app
from consumers.settings import SqlSettings
from aiohttp import web

path, port, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = chdb.connect(path)
conn.query("CREATE TABLE IF NOT EXISTS narrow (n UInt64) ENGINE = MergeTree ORDER BY n")
conn.query(f"INSERT INTO narrow SELECT number FROM numbers({rows})")
conn.close()

async def main():
    settings = SqlSettings(port=port)
    engine = AnalystEngine(path, settings.limits)
    await engine.start()
    runner = web.AppRunner(create_sql_app(engine, settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def run(rows: int, source: str) -> tuple[float, float, float, float]:
    """rows/s, seconds, the endpoint's RSS when ready and its peak RSS (MiB)."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp:
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(Path(tmp) / "ch"), str(port), str(rows)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError("the endpoint did not start")
            ready_rss = _rss_mib(server.pid)
            client = clickhouse_connect.get_client(host="127.0.0.1", port=port)
            query = (
                f"SELECT number FROM numbers({rows})"  # noqa: S608 (an int we chose)
                if source == "numbers"
                else "SELECT n FROM narrow"
            )
            seen = 0
            started = time.perf_counter()
            with client.query_row_block_stream(query) as stream:
                for block in stream:
                    seen += len(block)
            elapsed = time.perf_counter() - started
            if seen != rows:
                raise RuntimeError(f"read {seen} of {rows} rows")
            return rows / elapsed, elapsed, ready_rss, _peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--source", choices=["numbers", "table", "both"], default="both")
    args = parser.parse_args()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"host: {os.cpu_count()} CPUs, {cpu}; load average {os.getloadavg()}")
    print("| source | rows | seconds | rows/s | endpoint RSS ready (MiB) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    sources = ["numbers", "table"] if args.source == "both" else [args.source]
    for source in sources:
        for rows in args.rows:
            rate, seconds, ready, peak = run(rows, source)
            print(
                f"| {source} | {rows:,} | {seconds:.2f} | {rate:,.0f} | {ready:.0f} | {peak:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
