"""Which loop callbacks of the Kafka path run long: the produce cycle's stalls, named.

The real ``Publisher`` publishes a 1 KB chat exchange's three events to a private broker at a
given rate, on the standard asyncio loop, with every callback timed (``asyncio.Handle._run``
wrapped: ~1 µs each, where asyncio's debug mode costs far more and changes what it measures), and
each one longer than ``--slow-us`` named by its coroutine or function. The same run's loop-lag
monitor (proxy/looplag.py) gives the scheduling delay and the produce cycle's sections.

    .venv/bin/python -m tests.bench.proxy.bench_loop_stalls --rates 100,1000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.events
import collections
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deploy.local.kafka import KafkaBroker, create_topic, ensure_kafka_jars
from proxy.journal import Journal
from proxy.looplag import LoopLagMonitor
from proxy.process_publisher import ProcessPublisher
from proxy.publisher import Publisher
from tests.bench.proxy.bench_publisher import captured_exchanges

TOPIC = "bench.loop-stalls"


def _name(callback: Callable[..., Any]) -> str:
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task {getattr(coro, '__qualname__', repr(coro))}"
    return getattr(callback, "__qualname__", repr(callback))


@contextmanager
def timed_callbacks(slow_s: float) -> Iterator[dict[str, list[tuple[float, float]]]]:
    """Every asyncio callback timed; the slow ones' (wall, thread CPU) seconds by name. On a
    shared host the wall time includes time the process was descheduled; the CPU time does not."""
    slow: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    original = asyncio.events.Handle._run

    def run(handle: asyncio.events.Handle) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        original(handle)
        took = time.perf_counter() - started
        if took > slow_s:
            slow[_name(handle._callback)].append((took, time.thread_time() - cpu))  # type: ignore[attr-defined]

    asyncio.events.Handle._run = run  # type: ignore[method-assign]
    try:
        yield slow
    finally:
        asyncio.events.Handle._run = original  # type: ignore[method-assign]


def _process_cpu_s(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(bootstrap: str, rate: int, seconds: float, slow_s: float, producer: str) -> None:
    monitor = LoopLagMonitor(0.005)
    monitor.start()
    publisher_class = ProcessPublisher if producer == "process" else Publisher
    publisher = publisher_class(
        bootstrap_servers=bootstrap,
        topic=TOPIC,
        journal=Journal(Path(tempfile.mkdtemp(prefix="bench-journal-"))),
        loop_monitor=monitor,
    )
    await publisher.start()
    await publisher.flush()
    child = await publisher.producer_ready() if isinstance(publisher, ProcessPublisher) else None
    payloads = captured_exchanges(1000)
    with timed_callbacks(slow_s) as slow:
        started = time.perf_counter()
        cpu = time.process_time()
        child_cpu = _process_cpu_s(child) if child is not None else 0.0
        sent = 0
        while time.perf_counter() - started < seconds:
            key, request, chunk, completed = payloads[sent % len(payloads)]
            for value in (request, chunk, completed):
                publisher.publish(key, value)
            publisher.write_through()
            sent += 1
            await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
        await publisher.flush()
        cpu = time.process_time() - cpu
        child_cpu = _process_cpu_s(child) - child_cpu if child is not None else 0.0
    await publisher.stop()
    monitor.stop()
    print(
        f"\n== producer {producer}, {rate} exchanges/s for {seconds:.0f} s: {sent} sent, "
        f"{cpu / sent * 1e6:.0f} µs CPU each in the proxy's process"
        + (f", {child_cpu / sent * 1e6:.0f} µs in the producer process" if child else "")
    )
    lag = monitor.lag.report()
    print(
        f"scheduling delay (probe every 5 ms): p50 {lag['p50_ms']} p99 {lag['p99_ms']} "
        f"max {lag['max_ms']} ms over {lag['count']} probes"
    )
    for name, histogram in monitor.sections.items():
        report = histogram.report()
        print(
            f"section {name}: n={report['count']} mean {report['mean_ms']} ms "
            f"p99 {report['p99_ms']} max {report['max_ms']} ms"
        )
    print(f"callbacks longer than {slow_s * 1e6:.0f} µs (wall; and thread CPU, host-independent):")
    ranked = sorted(slow.items(), key=lambda item: -max(cpu for _, cpu in item[1]))
    for what, durations in ranked[:12]:
        walls = sorted(wall for wall, _ in durations)
        cpus = sorted(cpu for _, cpu in durations)
        middle = len(durations) // 2
        print(
            f"  {len(durations):5d} x wall median {walls[middle] * 1e3:6.2f} "
            f"max {walls[-1] * 1e3:6.2f} | CPU median {cpus[middle] * 1e3:6.2f} "
            f"max {cpus[-1] * 1e3:6.2f} ms  {what}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,1000", help="exchanges per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--slow-us", type=float, default=200.0)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--producers", default="inline", help="inline, process, or both")
    args = parser.parse_args()
    with KafkaBroker(
        Path(tempfile.mkdtemp(prefix="bench-kafka-")), libs_dir=ensure_kafka_jars()
    ) as k:
        asyncio.run(create_topic(k.bootstrap_servers, TOPIC, partitions=args.partitions))
        for rate in (int(value) for value in args.rates.split(",")):
            for producer in args.producers.split(","):
                asyncio.run(
                    run(k.bootstrap_servers, rate, args.seconds, args.slow_us / 1e6, producer)
                )


if __name__ == "__main__":
    main()
