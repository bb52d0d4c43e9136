"""What the loop-lag monitor costs: CPU of an idle uvloop loop with and without the probe, and
one section record. Alternating rounds, so drift on a shared host hits both alike.

    .venv/bin/python -m tests.bench.bench_looplag_cost --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import uvloop

from proxy.looplag import LoopLagMonitor


async def idle_cpu(seconds: float, interval_s: float | None) -> float:
    """Process CPU seconds per wall second of an otherwise idle loop."""
    monitor = LoopLagMonitor(interval_s)
    monitor.start()
    cpu = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu
    monitor.stop()
    return cpu / seconds


def record_ns(count: int = 200_000) -> float:
    monitor = LoopLagMonitor(None)
    started = time.perf_counter_ns()
    for _ in range(count):
        monitor.record("produce_hand_over", 0.000_3)
    return (time.perf_counter_ns() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    args = parser.parse_args()
    without, with_probe = [], []
    for _ in range(args.rounds):
        without.append(uvloop.run(idle_cpu(args.seconds, None)))
        with_probe.append(uvloop.run(idle_cpu(args.seconds, args.interval_ms / 1000)))
    off, on = statistics.median(without), statistics.median(with_probe)
    print(f"idle loop, uvloop, {args.rounds} rounds of {args.seconds:g} s (medians):")
    print(f"  no probe: {off * 1e3:.3f} ms CPU per second")
    print(
        f"  probe every {args.interval_ms:g} ms: {on * 1e3:.3f} ms CPU per second "
        f"({(on - off) * 1e3:.3f} ms more, {(on - off) * 100:.3f} % of a core; "
        f"{(on - off) / (1000 / args.interval_ms) * 1e6:.0f} µs per probe)"
    )
    print(f"one section record: {min(record_ns() for _ in range(5)):.0f} ns (best of 5)")


if __name__ == "__main__":
    main()
