"""Side-by-side proxy benchmark: direct vs our proxy (capture on / off) vs LiteLLM, interleaved.

Every round runs every scenario once, targets in a fresh random order, so a burst of load from
elsewhere on the machine hits all targets alike; the report keeps medians across rounds. The
proxy under test is pinned to core 0, wrk and the upstream to core 1. Results go to a JSON file
that ``report.py`` turns into docs/PERFORMANCE.md. Run by hand (not in CI):

    .venv/bin/python -m tests.bench.proxy.bench_proxy --rounds 3 --out bench-results.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench.proxy.bench_capture_cost import PROSE
from tests.bench.proxy.services import (
    CLIENT_KEY,
    LOAD_CPU,
    ROOT,
    Stack,
    Variant,
    cpu_seconds,
    pinned,
    process_cpu_seconds,
    rss_mb,
)

HERE = Path(__file__).resolve().parent
SIZES = {"1KB": 1024, "100KB": 100 * 1024, "2MB": 2 * 1024 * 1024}


def request_body(size: int, *, stream: bool = False) -> bytes:
    head = b'{"model":"gpt-4o-mini","stream":' + (b"true" if stream else b"false")
    head += b',"messages":[{"role":"user","content":"'
    tail = b'"}]}'
    filler = max(0, size - len(head) - len(tail))
    return head + (PROSE.encode() * (filler // len(PROSE) + 1))[:filler] + tail


def run_wrk(url: str, body_file: Path, connections: int, duration_s: int) -> dict[str, Any]:
    argv = [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "post.lua"),
        f"{url}/v1/chat/completions",
    ]
    done = subprocess.run(
        argv,
        env={**os.environ, "BENCH_BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, Any] = json.loads(line[8:])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no summary: {done.stdout}\n{done.stderr}")


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes) -> dict[str, Any]:
    """Time to first SSE frame and the gaps between frames, as a client sees them."""
    started = time.perf_counter()
    arrivals: list[float] = []
    buffer = b""
    async with session.post(
        f"{url}/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"},
    ) as response:
        async for data in response.content.iter_any():
            now = time.perf_counter()
            buffer += data
            frames = buffer.count(b"\n\n")
            buffer = buffer[buffer.rfind(b"\n\n") + 2 :] if frames else buffer
            arrivals.extend([now] * frames)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return {
        "ttft": arrivals[0] - started if arrivals else float("nan"),
        "gaps": gaps,
        "frames": len(arrivals),
    }


async def streams(url: str, count: int, concurrency: int, pid: int | None) -> dict[str, Any]:
    body = request_body(1024, stream=True)
    peak_rss = 0.0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded() -> dict[str, Any]:
            async with semaphore:
                return await one_stream(session, url, body)

        tasks = [asyncio.create_task(bounded()) for _ in range(count)]
        while not all(t.done() for t in tasks):
            if pid is not None:
                peak_rss = max(peak_rss, rss_mb(pid))
            await asyncio.wait(tasks, timeout=0.1)
        results = [t.result() for t in tasks]
    gaps = sorted(g for r in results for g in r["gaps"])
    ttfts = sorted(r["ttft"] for r in results)
    return {
        "ttft_p50_ms": statistics.median(ttfts) * 1000,
        "gap_p50_ms": statistics.median(gaps) * 1000,
        "gap_p99_ms": gaps[int(len(gaps) * 0.99)] * 1000,
        "gap_max_ms": gaps[-1] * 1000,
        "frames": sum(r["frames"] for r in results),
        "peak_rss_mb": peak_rss,
    }


async def paced_streams(url: str, count: int, pid: int | None) -> dict[str, Any]:
    """All streams at once; a target that cannot finish them in 120 s is reported as stalled."""
    try:
        async with asyncio.timeout(120):
            return await streams(url, count, count, pid)
    except TimeoutError:
        nan = float("nan")
        return {
            "ttft_p50_ms": nan,
            "gap_p50_ms": nan,
            "gap_p99_ms": nan,
            "gap_max_ms": 120_000,
            "frames": 0,
            "peak_rss_mb": rss_mb(pid) if pid else nan,
            "stalled": True,
        }


def sql(url: str, query: str) -> str:
    request = urllib.request.Request(  # noqa: S310
        f"{url}/sql?format=TSV", data=query.encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return str(response.read().decode())


def capture_lag(stack: Stack, rate: int, seconds: float) -> dict[str, Any]:
    """Paced load through the capture-on proxy, then loaded_at - completed_at per exchange."""
    url = stack.services["on"].url
    body = request_body(1024)
    since = time.time()

    async def paced() -> int:
        sent = 0
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                async with session.post(f"{url}/v1/chat/completions", data=body) as response:
                    await response.read()

            start = time.perf_counter()
            tasks = []
            while time.perf_counter() - start < seconds:
                await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(one()))
                sent += 1
            await asyncio.gather(*tasks)
        return sent

    with pinned(LOAD_CPU):
        sent = asyncio.run(paced())
    # Our own integer, not user input: S608 does not apply.
    where = f"completed_at >= fromUnixTimestamp64Micro({int(since * 1e6)})"
    deadline = time.monotonic() + 60
    count = 0
    while time.monotonic() < deadline:
        count = int(sql(stack.sql_url, f"SELECT count() FROM exchanges FINAL WHERE {where}"))  # noqa: S608
        if count >= sent:
            break
        time.sleep(0.5)
    row = sql(
        stack.sql_url,
        "SELECT quantiles(0.5, 0.99)(dateDiff('millisecond', completed_at, loaded_at)) "  # noqa: S608
        f"FROM exchanges FINAL WHERE {where}",
    ).strip()
    p50, p99 = json.loads(row)
    return {
        "rate_rps": rate,
        "seconds": seconds,
        "sent": sent,
        "loaded": count,
        "lag_p50_ms": p50,
        "lag_p99_ms": p99,
    }


def settled(pid: int, *, idle_share: float = 0.05, timeout_s: float = 60.0) -> float:
    """Wait until the process tree is idle (below ``idle_share`` of a core over 0.2 s).

    A run that ends with requests still in flight (wrk stops after its duration; 256 uploads of
    2 MB outlive it) leaves the target working for seconds: that CPU must not be charged to the
    next run. Returns the seconds waited (recorded with the run).
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        before = cpu_seconds(pid)
        time.sleep(0.2)
        if cpu_seconds(pid) - before < idle_share * 0.2:
            break
    return time.monotonic() - started


# Targets that are one process of ours: /statsz answers for the process that served the run.
LOOP_TARGETS = ("on", "off", "on-inline", "on-process", "on-before")


def loop_report(url: str) -> dict[str, Any] | None:
    """The proxy's loop-lag monitor (``/statsz`` → ``loop``), or None where there is none."""
    try:
        with urllib.request.urlopen(f"{url}/statsz", timeout=10) as response:  # noqa: S310
            report: dict[str, Any] | None = json.loads(response.read()).get("loop")
            return report
    except (OSError, ValueError):
        return None


def _bound_ms(bucket: str) -> float:
    """``le_200us`` → 0.2; the open last bucket (``gt_…``) → infinity."""
    return float("inf") if bucket.startswith("gt_") else int(bucket[3:-2]) / 1000


def loop_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the loop did during one run: the scheduling delays the probe met, and each section's
    runs (count, mean, and the bucket bound of its longest), from the totals before and after."""

    def grown(b: dict[str, Any] | None, a: dict[str, Any]) -> dict[str, Any]:
        counts = {k: v - (b["buckets"][k] if b else 0) for k, v in a["buckets"].items()}
        count = sum(counts.values())
        total_ms = a["mean_ms"] * a["count"] - (b["mean_ms"] * b["count"] if b else 0)
        longest = max((k for k, v in counts.items() if v > 0), key=_bound_ms, default=None)
        return {
            "count": count,
            "mean_ms": total_ms / count if count else 0.0,
            # Within this run the longest is known to its bucket; the exact maximum is lifetime.
            "max_bound_ms": _bound_ms(longest) if longest else 0.0,
            "buckets": counts,
        }

    return {
        "lag": grown(before["lag"], after["lag"]),
        "sections": {
            name: grown(before["sections"].get(name), section)
            for name, section in after["sections"].items()
        },
    }


@contextmanager
def loader_held(stack: Stack) -> Iterator[None]:
    """With ``stack.hold_loader``, the loader caught up and then stopped (SIGSTOP) for the run.

    On two cores the loader shares core 1 with the load generator and the upstream: with
    capture on it inserts what the run produces, and the client's latency grows with its CPU,
    not the proxy's. In production it runs elsewhere. Kafka still takes and acknowledges every
    event; the loader loads them once it continues."""
    if not (stack.hold_loader and stack.loader_pid):
        yield
        return
    settled(stack.loader_pid)
    os.kill(stack.loader_pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(stack.loader_pid, signal.SIGCONT)


def measured(stack: Stack, name: str, run: Any, **extra: Any) -> dict[str, Any]:
    """Run ``run()`` (a wrk run or a stream test) against one target, adding its CPU and load,
    and for one process of ours what its loop-lag monitor saw during the run."""
    service = stack.services[name]
    pid = service.pid
    waited = settled(pid)
    loop_before = loop_report(service.url) if name in LOOP_TARGETS else None
    cpu0, worker0 = cpu_seconds(pid), process_cpu_seconds(pid)
    with loader_held(stack):
        result: dict[str, Any] = run()
    cpu_s = cpu_seconds(pid) - cpu0
    # The worker alone: with the producer process, the tree's CPU also holds what it spends.
    worker_cpu_s = process_cpu_seconds(pid) - worker0
    loop_after = loop_report(service.url) if loop_before is not None else None
    if loop_before is not None and loop_after is not None:
        result["loop"] = loop_delta(loop_before, loop_after)
    return (
        result
        | extra
        | {
            "target": name,
            "cpu_s": cpu_s,
            "worker_cpu_s": worker_cpu_s,
            "load1": load_average()[0],
            "settle_s": waited,
        }
    )


def http_runs(
    stack: Stack, round_no: int, conc: int, label: str, body: Path, duration_s: int
) -> list[dict[str, Any]]:
    """One wrk run per target, in a fresh random order."""
    runs = []
    for name in random.sample(list(stack.services), len(stack.services)):
        url = stack.services[name].url
        run = measured(
            stack,
            name,
            lambda url=url: run_wrk(url, body, conc, duration_s),
            round=round_no,
            concurrency=conc,
            size=label,
        )
        print(
            f"r{round_no} c={conc:<3} {label:>5} {name:>7}: {run['rps']:8.0f} rps  "
            f"p50 {run['p50_us'] / 1000:7.2f} ms  p99 {run['p99_us'] / 1000:7.2f} ms  "
            f"p99.9 {run['p999_us'] / 1000:7.2f} ms  "
            f"stall ≤ {run.get('loop', {}).get('lag', {}).get('max_bound_ms', float('nan')):g} ms  "
            f"cpu {run['cpu_s']:.2f}s errors {run['status'] + run['read'] + run['timeout']}",
            flush=True,
        )
        runs.append(run)
    return runs


def stream_runs(stack: Stack, round_no: int) -> list[dict[str, Any]]:
    """Ten streams one after the other per target: TTFT and inter-frame gaps."""
    runs = []
    for name in random.sample(list(stack.services), len(stack.services)):
        url = stack.services[name].url

        def ten(url: str = url) -> dict[str, Any]:
            with pinned(LOAD_CPU):
                return asyncio.run(streams(url, 10, 1, None))

        run = measured(stack, name, ten, round=round_no, concurrency=1)
        print(
            f"r{round_no} stream {name:>7}: ttft {run['ttft_p50_ms']:.2f} ms, "
            f"gap p50 {run['gap_p50_ms']:.2f} ms, gap p99 {run['gap_p99_ms']:.2f} ms, "
            f"cpu {run['cpu_s'] / max(run['frames'], 1) * 1e6:.0f} µs/frame",
            flush=True,
        )
        runs.append(run)
    return runs


def paced_runs(stack: Stack, count: int) -> list[dict[str, Any]]:
    """``count`` streams at once per target: stalls and peak memory."""
    runs = []
    for name in random.sample(list(stack.services), len(stack.services)):
        service = stack.services[name]

        def many(service: Any = service) -> dict[str, Any]:
            with pinned(LOAD_CPU):
                return asyncio.run(paced_streams(service.url, count, service.pid))

        run = measured(stack, name, many, concurrency=count)
        print(
            f"{count} paced streams {name:>7}: gap p99 {run['gap_p99_ms']:.1f} ms "
            f"max {run['gap_max_ms']:.1f} ms rss {run['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        runs.append(run)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-s", type=int, default=2)
    parser.add_argument("--concurrency", default="1,16,64,256")
    parser.add_argument("--sizes", default="1KB,100KB,2MB")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--paced-streams", type=int, default=512)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="processes for the on-xN target")
    parser.add_argument("--no-pin", action="store_true", help="let the kernel place the proxy")
    parser.add_argument("--lag-rate", type=int, default=50, help="req/s for the capture-lag run")
    parser.add_argument(
        "--compare-producer",
        choices=("inline", "process"),
        help="one more capture-on target, on-MODE, whose Kafka producer runs as MODE",
    )
    parser.add_argument(
        "--compare-tree",
        metavar="REV",
        help="one more capture-on target, on-before, run from git revision REV's source tree: "
        "a before/after comparison within the same rounds",
    )
    parser.add_argument(
        "--hold-loader",
        action="store_true",
        help="stop the loader while each target is measured (it shares the load generator's "
        "core); it loads what Kafka holds between runs and for the capture-lag run",
    )
    parser.add_argument("--out", default="bench-results.json")
    parser.add_argument("--workdir", help="keep logs and data here (default: a new temp dir)")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "command": " ".join(["python -m tests.bench.proxy.bench_proxy", *sys.argv[1:]]),
        # The proxies read their settings from it: a run's LOGORHYTHMS_* are part of its command.
        "environment": {k: v for k, v in os.environ.items() if k.startswith("LOGORHYTHMS_")},
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_before": load_average(),
        "http": [],
        "streams": [],
        "paced": [],
    }
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="logorhythms-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"service logs and data in {workdir}", flush=True)
    bodies = {}
    for label in args.sizes.split(","):
        bodies[label] = workdir / f"body-{label}.json"
        bodies[label].write_bytes(request_body(SIZES[label]))
    variants = {
        f"on-{mode}": Variant(env={"LOGORHYTHMS_PRODUCER": mode})
        for mode in [args.compare_producer]
        if mode
    }
    if args.compare_tree:
        variants["on-before"] = Variant(root=source_tree(args.compare_tree, workdir / "before"))
        results["before"] = args.compare_tree
    with Stack(
        workdir,
        chunks=args.chunks,
        delay_ms=args.delay_ms,
        litellm=not args.no_litellm,
        workers=args.workers,
        pin=not args.no_pin,
        variants=variants,
    ) as stack:
        stack.hold_loader = args.hold_loader
        targets = list(stack.services)
        print(f"services up: {targets}; load {load_average()}", flush=True)
        # First, while every process is fresh: peak RSS must be the streams' own, not the
        # high-water mark the 2 MB bodies leave behind (CPython keeps freed arenas mapped).
        results["paced"] = paced_runs(stack, args.paced_streams)
        for round_no in range(args.rounds):
            for conc in [int(c) for c in args.concurrency.split(",")]:
                for label in args.sizes.split(","):
                    results["http"] += http_runs(
                        stack, round_no, conc, label, bodies[label], args.duration_s
                    )
            results["streams"] += stream_runs(stack, round_no)
        results["capture_lag"] = capture_lag(stack, rate=args.lag_rate, seconds=10)
        print(f"capture lag: {results['capture_lag']}", flush=True)
        results["proxy_rss_end_mb"] = rss_mb(stack.services["on"].pid)
    results["load_after"] = load_average()
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


def source_tree(rev: str, into: Path) -> Path:
    """Git revision ``rev`` of this repository, exported into ``into`` (its Python modules run
    with this virtualenv, from that directory)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(f"--compare-tree {rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
