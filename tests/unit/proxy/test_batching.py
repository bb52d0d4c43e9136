"""The publisher places every key exactly where aiokafka's default partitioner does (the
journal's replay sends through it, and an exchange must never straddle two partitions), and the
batches it compresses off the event loop are the bytes aiokafka would have sent."""

from __future__ import annotations

import os
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from proxy.batching import (
    CODECS,
    UNCOMPRESSED_ABOVE,
    Batches,
    PrecompressedBatch,
    compress_all,
    partition_for,
)


def test_request_ids_land_on_the_default_partitioners_partition() -> None:
    partitioner = DefaultPartitioner()
    for partitions in (1, 3, 7, 64):
        everything = list(range(partitions))
        for _ in range(500):
            key = str(uuid.uuid4()).encode()
            assert partition_for(key, partitions) == partitioner(key, everything, everything)


def test_high_bytes_and_the_sign_bit_are_handled_like_java() -> None:
    partitioner = DefaultPartitioner()
    everything = list(range(7))
    for key in (b"\xff" * 37, b"\x80\x00\x00\x00", bytes(range(256))):
        assert partition_for(key, 7) == partitioner(key, everything, everything)


# -- batches compressed before aiokafka's sender sees them --------------------------------------

EVENTS = [
    (
        f"exchange-{n % 7}".encode(),
        (b'{"role":"assistant","content":"chunk %d"}' % n) * 20,
        [("k", b"v")],
    )
    for n in range(300)
]


def _built(batch: BatchBuilder, compressed_off_loop: bool) -> bytes:
    for number, (key, value, headers) in enumerate(EVENTS):
        assert batch.append(
            timestamp=1_700_000_000_000 + number, key=key, value=value, headers=headers
        )
    if compressed_off_loop:
        compress_all([(0, batch, [])])
    batch._set_producer_state(4242, 3, 17)  # what aiokafka's sender does just before sending
    return bytes(batch._build())


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_batch_compressed_off_the_loop_is_byte_for_byte_aiokafkas_own(codec: str) -> None:
    codec_id = CODECS[codec][0]
    theirs = _built(BatchBuilder(UNCOMPRESSED_ABOVE, codec_id), compressed_off_loop=False)
    ours = _built(PrecompressedBatch(codec), compressed_off_loop=True)
    assert ours == theirs
    batch = DefaultRecordBatch(ours)
    assert batch.validate_crc()
    assert batch.compression_type == codec_id
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (4242, 3, 17)


def test_gzip_batches_read_back_the_same_records() -> None:
    ours = DefaultRecordBatch(_built(PrecompressedBatch("gzip"), compressed_off_loop=True))
    assert ours.validate_crc()
    assert ours.compression_type == CODECS["gzip"][0]
    records = [(r.key, r.value, r.headers, r.timestamp) for r in ours]
    assert records == [
        (key, value, headers, 1_700_000_000_000 + n)
        for n, (key, value, headers) in enumerate(EVENTS)
    ]


def test_records_that_do_not_compress_are_sent_as_aiokafka_sends_them() -> None:
    noise: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = [
        (b"k", os.urandom(4000), []) for _ in range(3)
    ]

    def built(batch: BatchBuilder, off_loop: bool) -> bytes:
        for number, (key, value, headers) in enumerate(noise):
            batch.append(
                timestamp=1_700_000_000_000 + number, key=key, value=value, headers=headers
            )
        if off_loop:
            compress_all([(0, batch, [])])
        batch._set_producer_state(1, 0, 0)
        return bytes(batch._build())

    ours = built(PrecompressedBatch("zstd"), off_loop=True)
    assert ours == built(BatchBuilder(UNCOMPRESSED_ABOVE, CODECS["zstd"][0]), off_loop=False)
    assert [record.value for record in DefaultRecordBatch(ours)] == [v for _, v, _ in noise]


def test_batches_keep_order_per_partition_and_send_a_large_event_alone() -> None:
    batches: Batches[int] = Batches(lambda: BatchBuilder(4096, 0), lambda key: key[0] % 2)
    large = b"x" * (UNCOMPRESSED_ABOVE + 1)
    for tag, (key, value) in enumerate(
        [(b"\x00", b"a" * 3000), (b"\x01", b"b"), (b"\x00", b"c" * 3000), (b"\x00", large)]
    ):
        batches.add(key, value, None, tag)
        assert sorted(batches.tags()) == list(range(tag + 1))  # what a spill would account for
    assert [(partition, tags) for partition, _, tags in batches.finish()] == [
        (0, [0]),  # full: goes before the next batch of its partition
        (0, [2]),  # the open batch of partition 0 closes before the large event
        (0, [3]),  # alone and uncompressed
        (1, [1]),
    ]
