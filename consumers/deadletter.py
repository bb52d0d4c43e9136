"""The dead-letter topic: records that can never be delivered, each with its original bytes, the
reason, and where it came from (topic, partition, offset, consumer group) in its headers."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from consumers.sink import Record
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

Poison = list[tuple[ConsumerRecord[bytes, bytes], str]]  # a record and why it is dead-lettered


class DeadLetterProducer:
    """Sends poison to the dead-letter topic; ``send`` returns once Kafka acknowledged all of it
    (``acks=all``, idempotent), so the runner may then commit past it."""

    def __init__(self, *, bootstrap_servers: str, group_id: str, topic: str) -> None:
        self._group_id = group_id
        self._topic = topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{group_id}-deadletter",
            acks="all",
            enable_idempotence=True,
            # A poison event of the largest size is dead-lettered whole.
            max_request_size=KAFKA_MAX_MESSAGE_BYTES,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, poison: Poison) -> None:
        futures = []
        for raw, reason in poison:
            log.error(
                "dead-lettering %s/%d@%d: %s", raw.topic, raw.partition, raw.offset, reason[:200]
            )
            futures.append(
                await self._producer.send(
                    self._topic,
                    raw.value,
                    key=raw.key,
                    headers=[
                        ("reason", reason[:2000].encode()),
                        ("source_topic", raw.topic.encode()),
                        ("source_partition", str(raw.partition).encode()),
                        ("source_offset", str(raw.offset).encode()),
                        ("consumer_group", self._group_id.encode()),
                    ],
                )
            )
        await asyncio.gather(*futures)


def as_consumer_record(record: Record) -> ConsumerRecord[bytes, bytes]:
    """A record a sink rejected, in the shape of a fetched one, for ``send``."""
    return ConsumerRecord(
        topic=record.topic, partition=record.partition, offset=record.offset, timestamp=0,
        timestamp_type=0, key=record.key, value=record.value, checksum=None,
        serialized_key_size=len(record.key or b""), serialized_value_size=len(record.value),
        headers=(),
    )  # fmt: skip
