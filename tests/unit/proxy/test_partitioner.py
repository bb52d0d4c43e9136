"""Our partitioner must place every key exactly where aiokafka's default partitioner does: the
journal's replay sends through it, and an exchange must never straddle two partitions."""

from __future__ import annotations

import random
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference_murmur2

from proxy.partitioner import murmur2, partition_for


@pytest.mark.parametrize("length", range(0, 70))
def test_murmur2_equals_kafkas_for_every_tail_length(length: int) -> None:
    rng = random.Random(length)
    for _ in range(200):
        data = rng.randbytes(length)
        assert murmur2(data) == reference_murmur2(data)


def test_request_ids_land_on_the_default_partitioners_partition() -> None:
    partitioner = DefaultPartitioner()
    for partitions in (1, 3, 7, 64):
        everything = list(range(partitions))
        for _ in range(500):
            key = str(uuid.uuid4()).encode()
            assert partition_for(key, partitions) == partitioner(key, everything, everything)


def test_high_bytes_and_the_sign_bit_are_handled_like_java() -> None:
    for data in (b"\xff" * 37, b"\x80\x00\x00\x00", bytes(range(256))):
        assert murmur2(data) == reference_murmur2(data)
