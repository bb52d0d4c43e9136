"""The publisher gathers events for its linger and hands Kafka one batch per partition: the
whole point of the linger is fewer, fuller produce cycles (docs/PERFORMANCE.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from deploy.local.kafka import create_topic
from proxy.journal import Journal
from proxy.publisher import Publisher

PARTITIONS = 3


async def publish_spread(kafka_bootstrap: str, topic: str, journal: Path, linger_ms: int) -> int:
    """Publish 30 exchanges' events a millisecond apart; return how many batches Kafka acked."""
    publisher = Publisher(
        bootstrap_servers=kafka_bootstrap,
        topic=topic,
        journal=Journal(journal),
        linger_ms=linger_ms,
    )
    await publisher.start()
    try:
        await publisher.flush()  # connected, start-up journal replayed
        publisher.drain_latency_samples()
        delivered = publisher.stats.delivered
        for number in range(30):
            publisher.publish(f"exchange-{number}".encode(), b"event")
            await asyncio.sleep(0.001)
        await publisher.flush()
        assert publisher.stats.delivered - delivered == 30
        return len(publisher.drain_latency_samples())  # one sample per acknowledged batch
    finally:
        await publisher.stop()


async def test_events_within_one_linger_travel_as_one_batch_per_partition(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=PARTITIONS)
    # 30 events over ~30-60 ms, well inside a 2 s linger: one batch per partition.
    assert await publish_spread(kafka_bootstrap, unique_topic, tmp_path / "long", 2000) <= 3
    # Without a linger the pump hands over what it has at each wake-up: the first event goes
    # alone, then at least one batch per partition the other 29 keys land on.
    assert await publish_spread(kafka_bootstrap, unique_topic, tmp_path / "none", 0) > PARTITIONS
