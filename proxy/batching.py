"""Events into Kafka batches, one open batch per partition: what both producers hand aiokafka.

The inline publisher (proxy/publisher.py) and the producer process (proxy/producer_process.py)
place each exchange's events themselves, on the partition Kafka's default partitioner gives the
key (``partition_for``), and hand aiokafka one batch per partition instead of one ``send()`` per
event: one call and one future per batch, so an event costs an append, not a coroutine and a
future (docs/decisions/0007-own-linger-and-partitioner.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from proxy.journal_record import Headers

# Events larger than this go to Kafka alone and uncompressed; it is also the producers' batch
# size, so nothing smaller is ever alone for its size. aiokafka compresses a batch on the event
# loop with three copies of it in memory: ~0.1 s of CPU for 30 MB that mostly does not compress
# (base64 images).
UNCOMPRESSED_ABOVE = 512 * 1024

Tag = TypeVar("Tag")


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (aiokafka's, and Java's) gives ``key``.

    The producers place each exchange's events themselves, one batch per partition, and must put
    them exactly where a plain ``producer.send()`` would: the journal's replay relies on it.
    """
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def build_batches(
    producer: AIOKafkaProducer,
    events: Iterable[tuple[bytes, bytes, Headers | None, Tag]],
    partition_of: Callable[[bytes], int],
) -> list[tuple[int, Any, list[Tag]]]:
    """``events`` (key, value, headers, tag) as aiokafka batches, in order within a partition.

    Returns (partition, batch, the tags of its events) in the order the batches must be handed
    over: a batch that filled up comes before the next one of its partition. An event above
    ``UNCOMPRESSED_ABOVE`` is a batch of its own, uncompressed, after its partition's open batch.
    """
    built: list[tuple[int, Any, list[Tag]]] = []
    open_batches: dict[int, tuple[Any, list[Tag]]] = {}
    for key, value, headers, tag in events:
        partition = partition_of(key)
        if len(value) > UNCOMPRESSED_ABOVE:
            current = open_batches.pop(partition, None)
            if current is not None:
                built.append((partition, current[0], current[1]))
            alone = BatchBuilder(UNCOMPRESSED_ABOVE, 0)  # codec 0: none
            alone.append(timestamp=None, key=key, value=value, headers=headers or [])
            built.append((partition, alone, [tag]))
            continue
        current = open_batches.get(partition)
        if (
            current is None
            or current[0].append(timestamp=None, key=key, value=value, headers=headers or [])
            is None
        ):
            if current is not None:
                built.append((partition, current[0], current[1]))
            batch = producer.create_batch()
            batch.append(timestamp=None, key=key, value=value, headers=headers or [])
            current = open_batches[partition] = (batch, [])
        current[1].append(tag)
    built.extend((partition, batch, tags) for partition, (batch, tags) in open_batches.items())
    return built
