"""Benchmark: capture lag (response end → row queryable in `exchanges`) and insert cadence.

Run by hand (not in CI), from the repository root:

    python -m tests.bench.clickhouse.bench_capture_lag --rates 50,200 --seconds 20

Starts the benchmark stack of tests/bench/proxy (private Kafka, the loader as the CLI runs it,
the fast fake upstream, the capture-on proxy), sends paced streamed requests at each rate and
reports the lag quantiles (``loaded_at - completed_at``) and the inserts per table and second
the loader made meanwhile (distinct insert times of the rows). The loader's
batch settings come from the environment as in production, e.g.
``LOGORHYTHMS_BATCH_MAX_AGE_S=0.8``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from tests.bench.proxy.bench_proxy import capture_lag, sql
from tests.bench.proxy.services import Stack

_TABLES = {
    "requests_raw": "inserted_at",
    "chunks_raw": "inserted_at",
    "completions_raw": "inserted_at",
    "exchanges": "loaded_at",
}


def _inserts_per_s(stack: Stack, since: float, until: float) -> dict[str, float]:
    """Inserts per table and second in [since, until]: every row of one insert carries the same
    default insert time (``inserted_at``, ``loaded_at`` = ``now64(3)`` of its block)."""
    window = (
        f"BETWEEN fromUnixTimestamp64Milli({int(since * 1000)}) "
        f"AND fromUnixTimestamp64Milli({int(until * 1000)})"
    )
    counts = {}
    for table, column in _TABLES.items():
        query = f"SELECT uniqExact({column}) FROM {table} WHERE {column} {window}"  # noqa: S608 (our constants)
        counts[table] = int(sql(stack.sql_url, query))
    return {table: round(count / max(1.0, until - since), 2) for table, count in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,200", help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workdir", help="keep logs and data here (default: a new temp dir)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="logorhythms-lag-"))
    age = os.environ.get("LOGORHYTHMS_BATCH_MAX_AGE_S", "default")
    print(f"LOGORHYTHMS_BATCH_MAX_AGE_S={age}; logs in {workdir}", flush=True)
    with Stack(workdir, chunks=20, delay_ms=20, litellm=False, workers=1, pin=False) as stack:
        for rate in (int(r) for r in args.rates.split(",")):
            load_before = Path("/proc/loadavg").read_text().split()[0]
            started = time.time()
            result = capture_lag(stack, rate=rate, seconds=args.seconds)
            result["inserts_per_s"] = _inserts_per_s(stack, started + 2, started + args.seconds)
            result["load_average"] = (
                f"{load_before} → {Path('/proc/loadavg').read_text().split()[0]}"
            )
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
