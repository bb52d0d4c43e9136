"""Events into Kafka batches, one open batch per partition: what both producers hand aiokafka.

The inline publisher (proxy/publisher.py) and the producer process (proxy/producer_process.py)
place each exchange's events themselves, on the partition Kafka's default partitioner gives the
key (``partition_for``), and hand aiokafka one batch per partition instead of one ``send()`` per
event: one call and one future per batch, so an event costs an append, not a coroutine and a
future (docs/decisions/0007-own-linger-and-partitioner.md).

The inline publisher also compresses its batches itself, in a worker thread, before aiokafka's
sender sees them (``PrecompressedBatch``): aiokafka compresses every batch of a produce request
inside the one loop callback that sends it, which was the longest stall the capture put on the
proxy's loop (docs/decisions/0030-compression-off-the-loop.md).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.codec import gzip_encode, lz4_encode, zstd_encode
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record._crecords import crc32c_cython

from proxy.journal_record import Headers

# Events larger than this go to Kafka alone and uncompressed; it is also the producers' batch
# size, so nothing smaller is ever alone for its size. aiokafka compresses a batch on the event
# loop with three copies of it in memory: ~0.1 s of CPU for 30 MB that mostly does not compress
# (base64 images).
UNCOMPRESSED_ABOVE = 512 * 1024

Tag = TypeVar("Tag")

# Kafka's record batch v2 header (KIP-98), as aiokafka's builders write it: base offset, length,
# partition leader epoch, magic, CRC-32C, attributes, last offset delta, first and max timestamp,
# producer id, producer epoch, base sequence, record count. The CRC covers attributes to the end.
_HEADER = struct.Struct(">qiibIhiqqqhii")
_CRC_AT = struct.calcsize(">qiib")
_ATTRIBUTES_AT = _CRC_AT + 4
_LENGTH_FROM = struct.calcsize(">qi")
_NO_LEADER_EPOCH = -1
# Kafka's codec ids in the attributes, and the encoders aiokafka itself uses for them.
CODECS: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "gzip": (1, gzip_encode),
    "lz4": (3, lz4_encode),
    "zstd": (4, zstd_encode),
}


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (aiokafka's, and Java's) gives ``key``.

    The producers place each exchange's events themselves, one batch per partition, and must put
    them exactly where a plain ``producer.send()`` would: the journal's replay relies on it.
    """
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


class PrecompressedBatch(BatchBuilder):  # type: ignore[misc]  # aiokafka's class is untyped
    """An aiokafka batch compressed before it is handed over.

    Events are appended uncompressed (aiokafka's own record encoder); ``compress()`` ends the
    batch and compresses it in a worker thread (the encoders release the GIL). aiokafka's sender
    sets the idempotent producer's id and sequence at the last moment, and then gets the batch
    from ``_build()``: the 61-byte header and a CRC-32C over the compressed records (a few µs),
    where aiokafka's own batch would be compressed there and then, on the loop.
    """

    def __init__(self, codec: str, batch_size: int = UNCOMPRESSED_ABOVE) -> None:
        super().__init__(batch_size, 0)  # records are encoded uncompressed; compress() does it
        self._codec_id, self._encode = CODECS[codec]
        self._fields: tuple[int, ...] | None = None  # the uncompressed batch's header
        self._records = b""
        self._producer = (-1, -1, -1)
        self._built: bytearray | None = None

    def compress(self) -> None:
        """End the batch and compress its records. Meant for a worker thread: nothing else holds
        the batch until it is handed over, and the encoders release the GIL. Compressed even when
        that is not smaller, as aiokafka's own (compiled) builder does."""
        self.close()
        uncompressed = self._builder.build()
        self._fields = _HEADER.unpack_from(uncompressed)
        self._records = self._encode(bytes(memoryview(uncompressed)[_HEADER.size :]))

    def _set_producer_state(
        self, producer_id: int, producer_epoch: int, base_sequence: int
    ) -> None:
        self._producer = (producer_id, producer_epoch, base_sequence)

    def _build(self) -> bytearray:
        if self._built is None:
            assert self._fields is not None, "aiokafka sent a batch that was not compressed"
            (_, _, _, magic, _, _, last_offset_delta, first_ts, max_ts, _, _, _, count) = (
                self._fields
            )
            buffer = bytearray(_HEADER.size + len(self._records))
            _HEADER.pack_into(
                buffer,
                0,
                0,  # base offset: the broker sets it
                len(buffer) - _LENGTH_FROM,
                _NO_LEADER_EPOCH,
                magic,
                0,  # the CRC, below
                self._codec_id,  # attributes: the codec; not transactional
                last_offset_delta,
                first_ts,
                max_ts,
                *self._producer,
                count,
            )
            buffer[_HEADER.size :] = self._records
            struct.pack_into(
                ">I", buffer, _CRC_AT, crc32c_cython(memoryview(buffer)[_ATTRIBUTES_AT:])
            )
            self._built = buffer
            self._records = b""
        return self._built

    def size(self) -> int:
        if self._built is not None:
            return len(self._built)
        if self._fields is not None:
            return _HEADER.size + len(self._records)
        size: int = self._builder.size()
        return size


class Batches(Generic[Tag]):
    """Events (key, value, headers, tag) gathered into batches, one open batch per partition, in
    order within a partition; ``add`` one at a time (so a caller can yield between events),
    ``finish`` once.

    ``finish`` returns (partition, batch, the tags of its events) in the order the batches must
    be handed over: a batch that filled up comes before the next one of its partition. An event
    above ``UNCOMPRESSED_ABOVE`` is a batch of its own, uncompressed, after its partition's open
    batch. ``tags()`` are every event's tag held so far, for a caller that must account for them
    if it abandons the batches."""

    def __init__(self, new_batch: Callable[[], Any], partition_of: Callable[[bytes], int]) -> None:
        self._new_batch = new_batch
        self._partition_of = partition_of
        self.built: list[tuple[int, Any, list[Tag]]] = []
        self._open: dict[int, tuple[Any, list[Tag]]] = {}
        self.events = 0

    def add(self, key: bytes, value: bytes, headers: Headers | None, tag: Tag) -> None:
        partition = self._partition_of(key)
        self.events += 1
        if len(value) > UNCOMPRESSED_ABOVE:
            current = self._open.pop(partition, None)
            if current is not None:
                self.built.append((partition, current[0], current[1]))
            alone = BatchBuilder(UNCOMPRESSED_ABOVE, 0)  # codec 0: none
            alone.append(timestamp=None, key=key, value=value, headers=headers or [])
            self.built.append((partition, alone, [tag]))
            return
        current = self._open.get(partition)
        if (
            current is None
            or current[0].append(timestamp=None, key=key, value=value, headers=headers or [])
            is None
        ):
            if current is not None:
                self.built.append((partition, current[0], current[1]))
            batch = self._new_batch()
            batch.append(timestamp=None, key=key, value=value, headers=headers or [])
            current = self._open[partition] = (batch, [])
        current[1].append(tag)

    def finish(self) -> list[tuple[int, Any, list[Tag]]]:
        self.built.extend(
            (partition, batch, tags) for partition, (batch, tags) in self._open.items()
        )
        self._open.clear()
        return self.built

    def tags(self) -> Iterator[Tag]:
        for _, _, tags in self.built:
            yield from tags
        for _, tags in self._open.values():
            yield from tags


def build_batches(
    producer: AIOKafkaProducer,
    events: Iterable[tuple[bytes, bytes, Headers | None, Tag]],
    partition_of: Callable[[bytes], int],
) -> list[tuple[int, Any, list[Tag]]]:
    """``events`` as aiokafka's own batches (compressed by aiokafka when it sends them), in
    ``Batches``' order, all at once."""
    batches: Batches[Tag] = Batches(producer.create_batch, partition_of)
    for key, value, headers, tag in events:
        batches.add(key, value, headers, tag)
    return batches.finish()


def compress_all(batches: Iterable[tuple[int, Any, list[Any]]]) -> None:
    """Compress every ``PrecompressedBatch`` among ``batches``: run in a worker thread."""
    for _, batch, _ in batches:
        if isinstance(batch, PrecompressedBatch):
            batch.compress()
