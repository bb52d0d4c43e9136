"""What one idle wake-up of an event loop costs on this machine, in CPU.

A loop that only sleeps (``asyncio.sleep``) does no work of its own, yet each wake-up costs CPU:
the timer interrupt, leaving the idle state (on a VM, a trip through the hypervisor) and running
with cold caches. That cost lands on every exchange a lightly loaded proxy serves (a request wakes
it several times: client bytes, upstream head, upstream body, Kafka acknowledgements) and is why
CPU per request at concurrency 1 is so much higher than under load (docs/PERFORMANCE.md).

    .venv/bin/python -m tests.bench.bench_wakeup [--wakeups 2000] [--sleep-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop


async def sleeper(wakeups: int, sleep_s: float) -> float:
    """CPU µs per wake-up of a loop that sleeps ``sleep_s`` ``wakeups`` times."""
    started = time.process_time()
    for _ in range(wakeups):
        await asyncio.sleep(sleep_s)
    return (time.process_time() - started) / wakeups * 1e6


async def spinner(wakeups: int) -> float:
    """The same number of loop iterations without going idle: the loop's own cost."""
    started = time.process_time()
    for _ in range(wakeups):
        await asyncio.sleep(0)
    return (time.process_time() - started) / wakeups * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wakeups", type=int, default=2000)
    parser.add_argument("--sleep-ms", type=float, default=5.0)
    args = parser.parse_args()
    for name, run in (("asyncio", asyncio.run), ("uvloop", uvloop.run)):
        idle = min(run(sleeper(args.wakeups, args.sleep_ms / 1000)) for _ in range(3))
        busy = min(run(spinner(args.wakeups)) for _ in range(3))
        print(
            f"{name:>8}: {idle:6.1f} µs CPU per idle wake-up ({args.sleep_ms:g} ms sleeps), "
            f"{busy:5.1f} µs per loop iteration without sleeping"
        )


if __name__ == "__main__":
    main()
