"""Benchmark: how many events per second (and CPU seconds per 1k events) the loader sustains.

Run by hand (not in CI), from the repository root:

    python -m tests.bench.clickhouse.bench_loader --exchanges 20000            # sink stages
    python -m tests.bench.clickhouse.bench_loader --exchanges 20000 --kafka    # + real runner

The traffic is a realistic mix: 70 % streamed chat completions of ~20 chunks each, 30 %
non-streamed (OpenAI with tools, Anthropic), every request body ~1 KB.

``sink`` mode (always run) feeds already-fetched messages through the runner's decode step and
``ClickHouseSink.write`` in batches of ``--batch`` events, and splits the CPU time by stage:
decode, raw row building, exchange assembly, each insert, the already-loaded check.
``--kafka`` then also publishes the same events to a private broker (started in a temporary
directory on free ports) and times the real loader (``run_loader``, what the CLI runs) from the
first fetch until every exchange row is in ClickHouse, so fetch and commit are included.

CPU figures are ``time.process_time()`` (every thread of this process, including the engine's),
so they stay meaningful on a machine shared with other work; wall-clock rates are given too.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord

from consumers import cyclegc as runner_module
from consumers.clickhouse import sink as sink_module
from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.loader import run_loader
from consumers.clickhouse.sink import ClickHouseSink
from consumers.cyclegc import collect_garbage_less
from consumers.decode import decode_batch
from consumers.runner import Runner
from consumers.settings import ConsumerSettings, LoaderSettings
from consumers.sink import Batch
from deploy.local.kafka import KafkaBroker, create_topic, ensure_kafka_jars
from schemas import Codec
from tests.integration.clickhouse.synthetic import Exchange, encoded, produce, uuid7

_ANSWER = " ".join(["token"] * 18)  # + role, finish, usage and [DONE]: 22 chunks
_PROMPT = "Summarise the following text in one line. " * 21  # ~1 KB request bodies


def traffic(exchanges: int, salt: str = "load") -> list[Exchange]:
    """``exchanges`` exchanges, one millisecond apart, in a fixed 7:2:1 mix."""
    now = time.time_ns() // 1_000_000
    stream = Exchange(request_id="", received_at_ms=0, user_text=_PROMPT, answer=_ANSWER)
    tools = stream.replace(
        model="gpt-4o", stream=False, tools=("search", "fetch"), tool_call="search"
    )
    claude = stream.replace(
        model="claude-3-5-sonnet", provider="anthropic", dialect="anthropic",
        endpoint="/v1/messages", stream=False,
    )  # fmt: skip
    kinds = [stream] * 7 + [tools] * 2 + [claude]
    return [
        kinds[i % 10].replace(request_id=uuid7(now + i, f"{salt}{i}"), received_at_ms=now + i)
        for i in range(exchanges)
    ]


class Stages:
    """CPU and wall seconds per named stage, accumulated over the run."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = collections.defaultdict(float)
        self.wall: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[name] += time.process_time() - cpu
            self.wall[name] += time.perf_counter() - wall
            self.calls[name] += 1

    def wrap_sync(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            with self.timed(name):
                return call(*args, **kwargs)

        return timed_call

    def wrap_async(self, name: Callable[..., str], call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        async def timed_call(*args: Any, **kwargs: Any) -> Any:
            with self.timed(name(*args, **kwargs)):
                return await call(*args, **kwargs)

        return timed_call


def _instrument(sink: ClickHouseSink, stages: Stages) -> Callable[[], None]:
    """Time the sink's stages from outside, without changing what they do; returns the undo
    (the timers cost several µs per exchange: ``--kafka`` must run without them)."""
    for name in (
        "raw_columns",
        "chunk_columns",
        "exchange_columns",
    ):  # absent before these were methods
        if hasattr(sink, name):
            setattr(sink, name, stages.wrap_sync(name.replace("_", " "), getattr(sink, name)))
    exchange_row = sink_module.exchange_row
    sink_module.exchange_row = stages.wrap_sync("exchange rows (assembly)", exchange_row)
    clickhouse = sink.clickhouse
    clickhouse.insert = stages.wrap_async(  # type: ignore[method-assign]
        lambda table, *a, **k: f"insert {table}", clickhouse.insert
    )
    clickhouse.rows = stages.wrap_async(  # type: ignore[method-assign]
        lambda sql, *a, **k: "loaded check" if "FROM exchanges" in sql else "read back",
        clickhouse.rows,
    )

    def undo() -> None:
        sink_module.exchange_row = exchange_row

    return undo


def _fetched(
    messages: list[tuple[str, bytes]], first: int, partition: int = 0
) -> list[ConsumerRecord[bytes, bytes]]:
    """The messages as aiokafka hands them to the runner."""
    return [
        ConsumerRecord(
            "bench", partition, first + i, 0, 0, key.encode(), value, None, len(key), len(value), ()
        )
        for i, (key, value) in enumerate(messages)
    ]


def _decode(
    codec: Codec, sink: ClickHouseSink, fetched: list[ConsumerRecord[bytes, bytes]]
) -> Batch:
    """What ``Runner._deliver`` does with fetched messages before the sink sees them."""
    batch, poison = decode_batch(codec, fetched, sink.columnar)
    if poison:
        raise RuntimeError(f"the benchmark's own events do not decode: {poison[0][1]}")
    return batch


async def sink_mode(messages: list[tuple[str, bytes]], batch: int, data_dir: Path) -> Stages:
    codec = Codec()
    stages = Stages()
    sink = ClickHouseSink(ClickHouse(f"chdb://{data_dir}"))
    await sink.start()
    # Once per process, not per batch: clickhouse-connect's first insert imports pandas.
    warm_up = encoded(traffic(10, salt="warm-up"), codec)
    await sink.write(_decode(codec, sink, _fetched(warm_up, 0, partition=1)))
    undo = _instrument(sink, stages)
    # What Runner.flush does around a batch.
    pause = getattr(runner_module, "CycleCollectionPause", contextlib.nullcontext)()

    async def one_batch(fetched: list[ConsumerRecord[bytes, bytes]]) -> None:
        with stages.timed("decode"):
            decoded = _decode(codec, sink, fetched)
        await sink.write(decoded)

    batches = [_fetched(messages[low : low + batch], low) for low in range(0, len(messages), batch)]
    try:
        with stages.timed("total"):
            for fetched in batches:
                with pause:
                    await one_batch(fetched)
    finally:
        undo()
        await sink.stop()
    return stages


async def kafka_mode(
    messages: list[tuple[str, bytes]], exchanges: int, batch_age_s: float | None, data_dir: Path
) -> Drained:
    """The real loader draining a topic that holds ``messages``."""
    with tempfile.TemporaryDirectory(prefix="bench-loader-kafka-") as tmp:
        broker = KafkaBroker(Path(tmp), libs_dir=ensure_kafka_jars())
        broker.start()
        try:
            bootstrap = broker.bootstrap_servers
            await create_topic(bootstrap, "bench.loader", partitions=3)
            await produce(bootstrap, "bench.loader", messages)
            print(f"  published {len(messages):,} events")
            settings = LoaderSettings(
                consumer=ConsumerSettings(
                    kafka_bootstrap_servers=bootstrap,
                    topic="bench.loader",
                    group_id="bench-loader",
                    deadletter_topic="bench.loader.deadletter",
                    **({} if batch_age_s is None else {"batch_max_age_s": batch_age_s}),
                ),
                clickhouse_url=f"chdb://{data_dir}",
            )
            return await _drain(settings, len(messages))
        finally:
            broker.stop()


@dataclasses.dataclass(slots=True)
class Drained:
    """The real loader, from its first batch to its last (group join and migrations excluded)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    deliver_cpu_s: float = 0.0  # decode + sink + dead letters + commit
    batches: int = 0
    records: int = 0


async def _drain(settings: LoaderSettings, events: int) -> Drained:
    stop = asyncio.Event()
    out = Drained()
    started: tuple[float, float] | None = None
    original = Runner._deliver

    async def timed(self: Runner, pending: list[Any]) -> None:
        nonlocal started
        cpu = time.process_time()
        started = started or (cpu, time.perf_counter())
        await original(self, pending)
        out.deliver_cpu_s += time.process_time() - cpu
        out.batches += 1
        out.records += len(pending)
        if out.records >= events:
            out.cpu_s = time.process_time() - started[0]
            out.wall_s = time.perf_counter() - started[1]
            stop.set()

    Runner._deliver = timed  # type: ignore[method-assign]
    try:
        await run_loader(settings, serve_sql_endpoint=False, stop=stop)
    finally:
        Runner._deliver = original  # type: ignore[method-assign]
    if out.records < events:
        raise RuntimeError(f"the loader stopped after {out.records} of {events} events")
    return out


def _report(stages: Stages, events: int) -> None:
    stages.cpu["other (grouping, bookkeeping, GC)"] = 2 * stages.cpu["total"] - sum(
        stages.cpu.values()
    )
    total_wall = stages.wall["total"]
    total_cpu = stages.cpu["total"]
    print(
        f"sink mode: {events / total_wall:,.0f} events/s wall, "
        f"{events / total_cpu:,.0f} events per CPU second, "
        f"{total_cpu / events * 1000:.3f} CPU s per 1k events"
    )
    print(f"  {'stage':<24}{'calls':>7}{'CPU s/1k ev':>13}{'share':>8}{'wall s':>9}")
    for name in sorted(stages.cpu, key=lambda n: -stages.cpu[n]):
        if name == "total":
            continue
        print(
            f"  {name:<24}{stages.calls[name]:>7}{stages.cpu[name] / events * 1000:>13.4f}"
            f"{stages.cpu[name] / total_cpu:>8.0%}{stages.wall[name]:>9.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=20_000, help="events per sink batch")
    parser.add_argument("--kafka", action="store_true", help="also run the real loader on Kafka")
    parser.add_argument("--batch-age-s", type=float, help="default: the loader's default")
    args = parser.parse_args()
    collect_garbage_less()  # what the loader's main() does
    messages = encoded(traffic(args.exchanges), Codec())
    print(
        f"{args.exchanges:,} exchanges = {len(messages):,} events "
        f"({sum(len(v) for _, v in messages) / len(messages):,.0f} B per event on average)"
    )
    print(f"load average: {Path('/proc/loadavg').read_text().strip()}")
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        stages = asyncio.run(sink_mode(messages, args.batch, Path(tmp) / "sink"))
        _report(stages, len(messages))
        if args.kafka:
            run = asyncio.run(
                kafka_mode(messages, args.exchanges, args.batch_age_s, Path(tmp) / "kafka")
            )
            n = run.records
            print(
                f"kafka mode (run_loader: fetch, decode, sink, commit): "
                f"{n / run.wall_s:,.0f} events/s wall, {n / run.cpu_s:,.0f} events per CPU "
                f"second, {run.cpu_s / n * 1000:.3f} CPU s per 1k events "
                f"(of which fetch and batching {(run.cpu_s - run.deliver_cpu_s) / n * 1000:.3f}), "
                f"{run.batches} batches of {n / run.batches:,.0f} events on average"
            )
    print(f"load average: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
