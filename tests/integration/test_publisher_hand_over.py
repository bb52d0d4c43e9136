"""The pump hands a linger's events to Kafka a slice at a time, compressed off the loop
(docs/decisions/0030-compression-off-the-loop.md): requests in flight run between the slices,
and a spill that lands between two slices loses and double-counts nothing."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from deploy.local.kafka import create_topic
from proxy.journal import Journal
from proxy.publisher import Publisher

EVENTS = 3000
QUEUE_MAX = 4000
VALUE = b'{"choices":[{"delta":{"content":"a chunk of an answer"}}]}' * 16  # ~1 KB


async def keys_in_topic(
    bootstrap: str, topic: str, at_least: int, *, distinct: bool = False
) -> collections.Counter[bytes]:
    """Every record's key, read until ``at_least`` records (or, ``distinct``, keys) arrived."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        seen: collections.Counter[bytes] = collections.Counter()
        deadline = time.monotonic() + 60
        while (len(seen) if distinct else sum(seen.values())) < at_least:
            assert time.monotonic() < deadline, f"only {seen.total()} records, {len(seen)} keys"
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                seen.update(record.key for record in records if record.key is not None)
        return seen
    finally:
        await consumer.stop()


async def test_a_spill_between_two_slices_of_a_hand_over_loses_nothing(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=3)
    publisher = Publisher(
        bootstrap_servers=kafka_bootstrap,
        topic=unique_topic,
        journal=Journal(tmp_path / "journal"),
        linger_ms=300,
        queue_max=QUEUE_MAX,
    )
    await publisher.start()
    try:
        await publisher.flush()  # connected, start-up journal replayed
        first = [f"first-{n}".encode() for n in range(EVENTS)]
        for key in first:
            publisher.publish(key, VALUE)
        # Wait for the hand-over to yield the loop part-way: events taken off the queue that
        # are not in a batch yet. One hand-over of 3,000 events in a single step never shows it.
        async with asyncio.timeout(30):
            while not (publisher._handing_over_events and publisher._taking):  # noqa: ASYNC110
                await asyncio.sleep(0)  # polls each loop turn: an event would need a hook
        assert not publisher.idle  # flush() must wait for a hand-over in progress
        # More than the queue may hold: the publisher spills in the middle of the hand-over.
        second = [f"second-{n}".encode() for n in range(QUEUE_MAX)]
        for key in second:
            publisher.publish(key, VALUE)
        assert publisher.stats.spills == 1
        await asyncio.wait_for(publisher.flush(), 60)
        stats = publisher.stats
        # The accounting identity of docs/OPERATIONS.md: every event counted exactly once.
        assert stats.published == (
            stats.delivered - stats.replayed + stats.journaled + stats.dropped + publisher.in_memory
        ), stats
        assert stats.dropped == 0
        assert stats.journaled == stats.replayed > 0
    finally:
        await publisher.stop()
    seen = await keys_in_topic(kafka_bootstrap, unique_topic, EVENTS + QUEUE_MAX)
    assert set(seen) == set(first) | set(second)  # every event reached Kafka, nothing else did
