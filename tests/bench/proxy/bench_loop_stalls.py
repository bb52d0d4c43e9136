"""Which loop callbacks of the Kafka path run long: the produce cycle's stalls, named.

The real ``Publisher`` publishes a 1 KB chat exchange's three events to a private broker at a
given rate, on the standard asyncio loop, with every callback timed (``asyncio.Handle._run``
wrapped: ~1 µs each, where asyncio's debug mode costs far more and changes what it measures), and
each one longer than ``--slow-us`` named by its coroutine or function. The same run's loop-lag
monitor (proxy/looplag.py) gives the scheduling delay and the produce cycle's sections.

``--cycle`` also lists what one produce cycle costs the loop: every callback and every wait in
the selector, in order, from the pump's wake-up to the acknowledgement, with the loop's
iterations and sleeps per second (what a low rate pays per linger, whatever its events).

    .venv/bin/python -m tests.bench.proxy.bench_loop_stalls --rates 100,1000 --seconds 5
    .venv/bin/python -m tests.bench.proxy.bench_loop_stalls --rates 20 --seconds 5 --cycle
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.events
import collections
import os
import selectors
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


# One step of the loop as --cycle lists it: kind ("callback" or "wait"), start (perf_counter
# seconds), wall seconds, thread CPU seconds, what (a callback's name; a wait's timeout).
Step = tuple[str, float, float, float, str]


@contextmanager
def timed_callbacks(
    slow_s: float, steps: list[Step] | None = None
) -> Iterator[dict[str, list[tuple[float, float]]]]:
    """Every asyncio callback timed; the slow ones' (wall, thread CPU) seconds by name. On a
    shared host the wall time includes time the process was descheduled; the CPU time does not.
    With ``steps``, every callback and every selector wait is appended to it as well."""
    slow: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    original = asyncio.events.Handle._run
    original_select = selectors.EpollSelector.select

    def run(handle: asyncio.events.Handle) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        original(handle)
        took, cpu = time.perf_counter() - started, time.thread_time() - cpu
        if took > slow_s:
            slow[_name(handle._callback)].append((took, cpu))  # type: ignore[attr-defined]
        if steps is not None:
            steps.append(("callback", started, took, cpu, _name(handle._callback)))  # type: ignore[attr-defined]

    def select(
        selector: selectors.EpollSelector, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        started = time.perf_counter()
        ready = original_select(selector, timeout)
        took = time.perf_counter() - started
        assert steps is not None
        steps.append(("wait", started, took, 0.0, f"timeout {timeout}"))
        return ready

    asyncio.events.Handle._run = run  # type: ignore[method-assign]
    if steps is not None:
        selectors.EpollSelector.select = select  # type: ignore[method-assign,assignment]
    try:
        yield slow
    finally:
        asyncio.events.Handle._run = original  # type: ignore[method-assign]
        selectors.EpollSelector.select = original_select  # type: ignore[method-assign]


def print_cycle(steps: list[Step], seconds: float) -> None:
    """The loop's iterations and sleeps per second, and one produce cycle step by step: from the
    wake-up that sent the first produce request after the run's midpoint to the first sleep after
    its acknowledgement. The benchmark's own publishing task (``task run``) is left out of the
    cycle's total."""
    waits = [s for s in steps if s[0] == "wait"]
    slept = [s for s in waits if s[2] > 0.0005]
    print(
        f"loop: {len(waits) / seconds:.0f} iterations/s, {len(slept) / seconds:.0f} of them "
        "after a sleep (> 0.5 ms in the selector)"
    )
    middle = steps[0][1] + (steps[-1][1] - steps[0][1]) / 2
    sending = next(
        (i for i, s in enumerate(steps) if s[1] > middle and s[4] == "task Sender._sender_routine"),
        None,
    )
    if sending is None:
        print("no produce cycle in the second half of the run")
        return
    # The cycle begins with the wake-up that led to this send: just after the last sleep.
    first = sending
    while first > 0 and not (steps[first - 1][0] == "wait" and steps[first - 1][2] > 0.0005):
        first -= 1
    acknowledged = False
    cycle: list[Step] = []
    for step in steps[first:]:
        if step[0] == "wait" and step[2] > 0.0005 and acknowledged:
            break
        cycle.append(step)
        acknowledged = acknowledged or step[4] == "Publisher._on_delivery"
    t0 = cycle[0][1]
    print("one produce cycle (wall ms from the pump's wake-up; thread CPU µs):")
    for kind, started, took, cpu, what in cycle:
        if kind == "wait":
            print(f"  {(started - t0) * 1e3:8.2f} ms   wait {took * 1e3:6.2f} ms ({what})")
        else:
            print(f"  {(started - t0) * 1e3:8.2f} ms {cpu * 1e6:6.0f} µs  {what}")
    work = [s for s in cycle if s[0] == "callback" and s[4] != "task run"]
    sleeps = sum(1 for s in cycle if s[0] == "wait" and s[2] > 0.0005)
    print(
        f"cycle: {len(work)} callbacks, {sum(s[3] for s in work) * 1e6:.0f} µs of thread CPU, "
        f"{sleeps + 1} wake-ups from sleep (the one that began it and each after a sleep)"
    )


def _process_cpu_s(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    bootstrap: str, rate: int, seconds: float, slow_s: float, producer: str, cycle: bool
) -> None:
    # --cycle: no probe, so the loop's iterations and the cycle's steps are the capture's own.
    monitor = LoopLagMonitor(None if cycle else 0.005)
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
    steps: list[Step] | None = [] if cycle else None
    with timed_callbacks(slow_s, steps) as slow:
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
        traced = len(steps) if steps is not None else 0
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
    if not cycle:
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
    if steps is not None:
        print_cycle(steps[:traced], seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,1000", help="exchanges per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--slow-us", type=float, default=200.0)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--producers", default="inline", help="inline, process, or both")
    parser.add_argument(
        "--cycle", action="store_true", help="list one produce cycle's callbacks and waits"
    )
    args = parser.parse_args()
    with KafkaBroker(
        Path(tempfile.mkdtemp(prefix="bench-kafka-")), libs_dir=ensure_kafka_jars()
    ) as k:
        asyncio.run(create_topic(k.bootstrap_servers, TOPIC, partitions=args.partitions))
        for rate in (int(value) for value in args.rates.split(",")):
            for producer in args.producers.split(","):
                asyncio.run(
                    run(
                        k.bootstrap_servers,
                        rate,
                        args.seconds,
                        args.slow_us / 1e6,
                        producer,
                        args.cycle,
                    )
                )


if __name__ == "__main__":
    main()
