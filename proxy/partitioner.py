"""Kafka's default partitioner (murmur2 of the key), faster than aiokafka's.

The publisher places each exchange's events itself (one batch per partition), and must put them
exactly where a plain ``producer.send()`` would, since the journal's replay uses that: both must
agree, or an exchange caught by a spill would straddle two partitions. aiokafka's pure-Python
murmur2 reads the key byte by byte with a mask per step, once per exchange; this one reads it
four bytes at a time (docs/decisions/0007-own-linger-and-partitioner.md).
"""

from __future__ import annotations

import functools
import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995  # murmur2's mixing constant
_MASK = 0xFFFFFFFF


@functools.cache
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def murmur2(data: bytes) -> int:
    """The 32-bit MurmurHash2 of Kafka's Java client (``Utils.murmur2``), unsigned."""
    length = len(data)
    h = _SEED ^ length
    for k in _words(length >> 2).unpack_from(data):
        k = (k * _M) & _MASK
        h = ((h * _M) ^ ((k ^ (k >> 24)) * _M)) & _MASK  # one mask for both products
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
