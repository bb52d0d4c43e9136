"""What reached Kafka, decoded: each exchange's events, to check "captured exactly once"."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Codec
from schemas.codec import EventType


@dataclass
class Exchange:
    requests: int = 0
    completed: int = 0
    chunk_seqs: list[int] = field(default_factory=list)
    chunk_count: int = -1  # from the completed event
    proxy_instance: str = ""  # host:pid of the process that served it (the request event)

    @property
    def exactly_once(self) -> bool:
        return (
            self.requests == 1
            and self.completed == 1
            and sorted(self.chunk_seqs) == list(range(1, self.chunk_count + 1))
        )

    @property
    def pid(self) -> int:
        return int(self.proxy_instance.rsplit(":", 1)[1])


async def read_exchanges(
    bootstrap: str, topic: str, ids: Collection[str], *, timeout_s: float = 30.0
) -> dict[str, Exchange]:
    """Every event of the topic, grouped by request id, once each of ``ids`` has its completed
    event; read to the end of every partition, so a duplicate written before then shows."""
    codec = Codec()
    exchanges: dict[str, Exchange] = defaultdict(Exchange)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        end: dict[TopicPartition, int] | None = None
        while True:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    assert record.value is not None
                    event = codec.decode(record.value)
                    exchange = exchanges[event.record["request_id"]]
                    if event.type is EventType.REQUEST:
                        exchange.requests += 1
                        exchange.proxy_instance = event.record["proxy_instance"]
                    elif event.type is EventType.CHUNK:
                        exchange.chunk_seqs.append(event.record["seq"])
                    else:
                        exchange.completed += 1
                        exchange.chunk_count = event.record["chunk_count"]
            if end is None and all(exchanges[i].completed for i in ids):
                end = await consumer.end_offsets(list(consumer.assignment()))
            if end is not None and all(await _reached(consumer, end)):
                return dict(exchanges)
            if time.monotonic() > deadline:
                missing = [i for i in ids if not exchanges[i].completed]
                raise AssertionError(
                    f"{len(missing)} exchanges never completed in Kafka: {missing}"
                )
            await asyncio.sleep(0)
    finally:
        await consumer.stop()


async def _reached(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> list[bool]:
    return [await consumer.position(tp) >= offset for tp, offset in end.items()]
