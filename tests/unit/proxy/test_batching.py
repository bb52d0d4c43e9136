"""The publisher places every key exactly where aiokafka's default partitioner does: the
journal's replay sends through it, and an exchange must never straddle two partitions."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner

from proxy.batching import partition_for


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
