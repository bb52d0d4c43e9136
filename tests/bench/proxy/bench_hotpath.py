"""Calibrate the forward path: direct vs the bare aiohttp pass-through vs our proxy variants.

Every round runs every target once per scenario, targets in a fresh random order; the summary
keeps medians over rounds. Scenarios: wrk at concurrency 1 (added latency) and at higher
concurrency (throughput, CPU per request), and one stream at a time (added TTFT). CPU per request
comes from ``/proc/<pid>/stat`` around each run, the steadiest figure on a shared machine.

    .venv/bin/python -m tests.bench.proxy.bench_hotpath --rounds 5 --duration-s 3 \\
        --variant base-on=/tmp/base: --variant asyncio-on=:LOGORHYTHMS_EVENT_LOOP=asyncio

``--variant NAME=ROOT:K=V,K=V`` adds a proxy started from source tree ROOT (empty: this one) with
those environment variables; capture is on unless the variant says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.proxy.bench_proxy import (
    SIZES,
    http_runs,
    load_average,
    measured,
    request_body,
    streams,
)
from tests.bench.proxy.services import LOAD_CPU, Stack, Variant, pinned


def parse_variant(text: str) -> tuple[str, Variant]:
    name, _, rest = text.partition("=")
    root, _, env_text = rest.partition(":")
    env = dict(pair.split("=", 1) for pair in env_text.split(",") if pair)
    return name, Variant(env=env, root=Path(root) if root else None)


def wrk_round(
    stack: Stack, round_no: int, conc: int, label: str, body: Path, duration_s: int
) -> list[dict[str, Any]]:
    """bench_proxy's wrk round, plus CPU per request for this report."""
    runs = http_runs(stack, round_no, conc, label, body, duration_s)
    for run in runs:
        run["cpu_us_per_req"] = run["cpu_s"] / max(1, run["requests"]) * 1e6
    return runs


def stream_round(stack: Stack, round_no: int, count: int) -> list[dict[str, Any]]:
    runs = []
    for name in random.sample(list(stack.services), len(stack.services)):
        url = stack.services[name].url

        def some(url: str = url) -> dict[str, Any]:
            with pinned(LOAD_CPU):
                return asyncio.run(streams(url, count, 1, None))

        run = measured(stack, name, some, round=round_no)
        print(f"r{round_no} stream {name:>12}: ttft {run['ttft_p50_ms']:.3f} ms", flush=True)
        runs.append(run)
    return runs


def summary(results: dict[str, Any], targets: list[str]) -> str:
    lines = []
    by: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for run in results["http"]:
        by.setdefault((run["concurrency"], run["target"]), []).append(run)
    for conc in sorted({c for c, _ in by}):
        direct = by.get((conc, "direct"), [])
        d50 = statistics.median(r["p50_us"] for r in direct) if direct else 0.0
        d99 = statistics.median(r["p99_us"] for r in direct) if direct else 0.0
        lines.append(
            f"\nc={conc}  target | req/s | p50 ms | p99 ms | +p50 ms | +p99 ms"
            " | CPU us/req median (min)"
        )
        for name in targets:
            runs = by.get((conc, name), [])
            if not runs:
                continue
            p50 = statistics.median(r["p50_us"] for r in runs)
            p99 = statistics.median(r["p99_us"] for r in runs)
            cpus = [r["cpu_us_per_req"] for r in runs]
            lines.append(
                f"{name:>12} | {statistics.median(r['rps'] for r in runs):7.0f} | {p50 / 1000:.3f}"
                f" | {p99 / 1000:.3f} | {(p50 - d50) / 1000:+.3f} | {(p99 - d99) / 1000:+.3f}"
                f" | {statistics.median(cpus):.0f} ({min(cpus):.0f})"
            )
    if results["streams"]:
        direct_ttft = statistics.median(
            r["ttft_p50_ms"] for r in results["streams"] if r["target"] == "direct"
        )
        lines.append("\nstreams  target | TTFT p50 ms | added ms | CPU us/stream")
        for name in targets:
            runs = [r for r in results["streams"] if r["target"] == name]
            ttft = statistics.median(r["ttft_p50_ms"] for r in runs)
            cpu = statistics.median(r["cpu_s"] for r in runs) / results["stream_count"] * 1e6
            lines.append(f"{name:>12} | {ttft:.3f} | {ttft - direct_ttft:+.3f} | {cpu:.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration-s", type=int, default=3)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--size", default="1KB", choices=sorted(SIZES))
    parser.add_argument("--streams", type=int, default=10, help="streams per target per round")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--no-standard", action="store_true", help="skip the on/off proxies")
    parser.add_argument(
        "--passthrough", default="asyncio,uvloop", help="event loops to run the pass-through on"
    )
    parser.add_argument("--variant", action="append", default=[], type=parse_variant)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--out", default="bench-hotpath.json")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="logorhythms-hotpath-"))
    body = workdir / "body.json"
    body.write_bytes(request_body(SIZES[args.size]))
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_before": load_average(),
        "args": {k: v for k, v in vars(args).items() if k != "variant"},
        "variants": {name: {"env": dict(v.env), "root": str(v.root)} for name, v in args.variant},
        "stream_count": args.streams,
        "http": [],
        "streams": [],
    }
    print(f"logs in {workdir}", flush=True)
    with Stack(
        workdir,
        chunks=args.chunks,
        delay_ms=args.delay_ms,
        litellm=False,
        workers=1,
        pin=not args.no_pin,
        passthrough=tuple(loop for loop in args.passthrough.split(",") if loop),
        variants=dict(args.variant),
        standard=not args.no_standard,
    ) as stack:
        targets = list(stack.services)
        print(f"services up: {targets}; load {load_average()}", flush=True)
        for round_no in range(args.rounds):
            for conc in [int(c) for c in args.concurrency.split(",")]:
                results["http"] += wrk_round(
                    stack, round_no, conc, args.size, body, args.duration_s
                )
            if args.streams:
                results["streams"] += stream_round(stack, round_no, args.streams)
    results["load_after"] = load_average()
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(summary(results, targets))
    print(f"load before {results['load_before']} after {results['load_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
