"""The producer process (LOGORHYTHMS_PRODUCER=process): the proxy's publisher only journals and
rings; a process of its own sends the journal to Kafka, reports acknowledgements back, and is
restarted when killed, re-sending from the acknowledged position (docs/decisions/0019-…)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from deploy.local.kafka import create_topic
from proxy.batching import partition_for
from proxy.droplog import read_dropped
from proxy.journal import Journal, segment_paths
from proxy.process_publisher import ProcessPublisher

PARTITIONS = 3


async def _keys_by_partition(bootstrap: str, topic: str, count: int) -> dict[bytes, set[int]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        seen: dict[bytes, set[int]] = {}
        deadline = time.monotonic() + 30
        while len(seen) < count:
            assert time.monotonic() < deadline, f"only {len(seen)} of {count} keys in Kafka"
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    assert record.key is not None
                    seen.setdefault(record.key, set()).add(record.partition)
        return seen
    finally:
        await consumer.stop()


def _publisher(bootstrap: str, topic: str, directory: Path, *, linger_ms: int) -> ProcessPublisher:
    journal = Journal(directory, max_bytes=64 * 1024**2, segment_bytes=16 * 1024**2)
    return ProcessPublisher(
        bootstrap_servers=bootstrap, topic=topic, journal=journal, linger_ms=linger_ms
    )


async def _wait_for(condition: object, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_the_producer_process_delivers_survives_a_kill_and_frees_the_journal(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=PARTITIONS)
    publisher = _publisher(kafka_bootstrap, unique_topic, tmp_path, linger_ms=5)
    await publisher.start()
    try:
        for number in range(200):
            publisher.publish(f"exchange-{number}".encode(), b"event")
            publisher.write_through()
        async with asyncio.timeout(30):
            await publisher.flush()
        assert publisher.stats.delivered >= 200
        assert not publisher.degraded
        # Killed mid-traffic: the proxy restarts it, and it resends from the acknowledged position.
        first = await publisher.producer_ready()
        os.kill(first, signal.SIGKILL)
        for number in range(200, 400):
            publisher.publish(f"exchange-{number}".encode(), b"event")
            publisher.write_through()
        await _wait_for(lambda: publisher.stats.producer_restarts >= 1, "the producer's restart")
        async with asyncio.timeout(30):
            await publisher.flush()
        assert await publisher.producer_ready() != first
    finally:
        await publisher.stop()
    seen = await _keys_by_partition(kafka_bootstrap, unique_topic, 400)
    # Every event arrived, on the partition the inline publisher would have chosen.
    for key, partitions in seen.items():
        assert partitions == {partition_for(key, PARTITIONS)}
    # Acknowledged whole: nothing left to replay on the next start.
    reopened = Journal(tmp_path)
    reopened.open()
    try:
        assert not reopened.has_unacked
    finally:
        reopened.close()
    assert len(segment_paths(tmp_path)) <= 1


async def test_an_event_refused_inside_a_batch_is_found_alone_and_the_rest_delivered(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    # The topic takes 20 kB: a batch holding one 100 kB event among small ones is refused
    # whole, and only that event may be dropped.
    await create_topic(
        kafka_bootstrap, unique_topic, partitions=1, configs={"max.message.bytes": "20000"}
    )
    publisher = _publisher(kafka_bootstrap, unique_topic, tmp_path, linger_ms=50)
    await publisher.start()
    try:
        await publisher.producer_ready()
        for number in range(101):
            value = os.urandom(100_000) if number == 50 else b"event"
            publisher.publish(f"exchange-{number}".encode(), value)
        publisher.write_through()  # one ring: all 101 gather into one batch
        async with asyncio.timeout(30):
            await publisher.flush()
        assert publisher.stats.dropped == 1
    finally:
        await publisher.stop()
    seen = await _keys_by_partition(kafka_bootstrap, unique_topic, 100)
    assert b"exchange-50" not in seen
    assert set(seen) == {f"exchange-{n}".encode() for n in range(101) if n != 50}
    assert read_dropped(tmp_path) == ["exchange-50"]
