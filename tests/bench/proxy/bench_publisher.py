"""CPU per event handed to Kafka: today's Publisher vs a batching prototype (not in the proxy).

The proxy's pump awaits ``producer.send()`` once per event; aiokafka then runs, per event, a
metadata wait, a pure-Python murmur2 of the key, a future and an accumulator append. The
prototype drains the whole queue at each wake-up, computes each exchange's partition once
(murmur2 as Kafka's default partitioner does, so partitioning is unchanged), fills one
``BatchBuilder`` per partition and hands it over with ``send_batch()``: one future per batch.

Both run against a private broker; the number is process CPU time per event from the first
publish to the last acknowledgement (so compression and the network round trips count).

    python -m tests.bench.proxy.bench_publisher [--events 60000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from deploy.local.kafka import KafkaBroker, create_topic, ensure_kafka_jars
from proxy.journal import Journal
from proxy.publisher import Publisher
from schemas import EventType
from tests.bench.proxy.bench_capture_cost import Steps

EVENTS_PER_EXCHANGE = 22  # request + 20 chunks + completed
BURST = 200  # events published between two yields to the loop, as under load


class BatchingPublisher:
    """The prototype: same publish() contract, one BatchBuilder per partition per wake-up."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.delivered = 0
        self._queue: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._partitions: dict[bytes, int] = {}  # an exchange's key → its partition
        self._pending: set[asyncio.Future[object]] = set()
        self._bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._pump: asyncio.Task[None] | None = None
        self._count = 0

    async def start(self) -> None:
        # aiokafka binds the running loop at construction, so build it here, like Publisher.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type="lz4",
            linger_ms=5,
            max_batch_size=512 * 1024,
        )
        await self._producer.start()
        self._count = len(await self._producer.partitions_for(self.topic))
        self._pump = asyncio.create_task(self._run())

    def publish(self, key: bytes, value: bytes) -> None:
        self._queue.append((key, value))
        self._wakeup.set()

    def _partition(self, key: bytes) -> int:
        partition = self._partitions.get(key)
        if partition is None:
            # Kafka's default partitioner: murmur2(key) & 0x7fffffff % partitions.
            partition = (murmur2(key) & 0x7FFFFFFF) % self._count
            if len(self._partitions) > 100_000:
                self._partitions.clear()
            self._partitions[key] = partition
        return partition

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batches: dict[int, object] = {}
            sizes: collections.Counter[int] = collections.Counter()
            while self._queue:
                key, value = self._queue.popleft()
                partition = self._partition(key)
                batch = batches.get(partition)
                if batch is None:
                    batch = batches[partition] = self._producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:  # type: ignore[attr-defined]
                    await self._submit(batch, partition, sizes.pop(partition))
                    batch = batches[partition] = self._producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)  # type: ignore[attr-defined]
                sizes[partition] += 1
            for partition, batch in batches.items():
                await self._submit(batch, partition, sizes[partition])

    async def _submit(self, batch: object, partition: int, size: int) -> None:
        future = await self._producer.send_batch(batch, self.topic, partition=partition)
        self._pending.add(future)

        def done(f: asyncio.Future[object], size: int = size) -> None:
            self._pending.discard(f)
            if not f.cancelled() and f.exception() is None:
                self.delivered += size

        future.add_done_callback(done)

    async def flush(self) -> None:
        while self._queue:  # noqa: ASYNC110 -- a bench: no "idle" event needed
            await asyncio.sleep(0.005)
        while self._pending:
            await asyncio.wait(set(self._pending))

    async def stop(self) -> None:
        await self.flush()
        if self._pump is not None:
            self._pump.cancel()
        await self._producer.stop()


def events(count: int) -> list[tuple[bytes, bytes]]:
    """Realistic keys and values: one encoded chunk event per event, 22 per request id."""
    steps = Steps(1024)
    value = steps.codec.encode(EventType.CHUNK, steps.chunk_record)
    out = []
    for i in range(count):
        exchange = i // EVENTS_PER_EXCHANGE
        out.append((f"0190f1e2-7c3a-7000-8000-{exchange:012d}".encode(), value))
    return out


async def feed(publisher: Publisher | BatchingPublisher, batch: list[tuple[bytes, bytes]]) -> float:
    await publisher.start()
    await publisher.flush()
    started = time.process_time()
    for i, (key, value) in enumerate(batch):
        publisher.publish(key, value)
        if i % BURST == BURST - 1:
            await asyncio.sleep(0)
    await publisher.flush()
    cpu = time.process_time() - started
    await publisher.stop()
    return cpu / len(batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    batch = events(args.events)
    with tempfile.TemporaryDirectory(prefix="logorhythms-bench-pub-") as tmp:
        broker = KafkaBroker(Path(tmp), libs_dir=ensure_kafka_jars())
        broker.start()
        try:
            bootstrap = broker.bootstrap_servers
            results: dict[str, list[float]] = {
                "Publisher (send per event)": [],
                "prototype (send_batch)": [],
            }
            for round_no in range(args.rounds):
                for name in results:
                    topic = f"bench_pub_{round_no}_{len(results[name])}_{name[:4].strip()}"
                    asyncio.run(create_topic(bootstrap, topic, partitions=3))
                    publisher: Publisher | BatchingPublisher = (
                        Publisher(
                            bootstrap_servers=bootstrap,
                            topic=topic,
                            journal=Journal(Path(tmp) / f"journal-{topic}"),
                        )
                        if name.startswith("Publisher")
                        else BatchingPublisher(bootstrap, topic)
                    )
                    results[name].append(asyncio.run(feed(publisher, batch)))
                    print(f"round {round_no} {name}: {results[name][-1]:.1f} µs CPU/event")
        finally:
            broker.stop()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"load average {' '.join(load)}; median CPU µs per event over {args.rounds} rounds:")
    for name, values in results.items():
        print(f"  {name:28s} {statistics.median(values):7.1f}")


if __name__ == "__main__":
    main()
