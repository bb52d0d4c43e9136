"""ClickHouse's compressed block framing, checked against a block the engine itself wrote."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import lz4.block
import pytest

from consumers.clickhouse.compressedblock import (
    BLOCK_BYTES,
    HEADER,
    METHOD_LZ4,
    BlockWriter,
    CompressedBlockError,
    checksum,
    compress_block,
    read_blocks,
)

# The first block of a MergeTree column file (x.bin of `x UInt64`, 0..99999) written by the
# engine we ship (chdb 4.4): the ground truth for the checksum's byte order.
ENGINE_BLOCK = Path(__file__).parent / "fixtures" / "mergetree_block.bin"


def test_the_checksum_matches_a_block_the_engine_wrote() -> None:
    block = ENGINE_BLOCK.read_bytes()
    method, size, raw_size = HEADER.unpack_from(block, 16)
    assert method == METHOD_LZ4
    assert size == len(block) - 16
    assert checksum(block[16:]) == block[:16]
    assert read_blocks(block) == struct.pack(f"<{raw_size // 8}Q", *range(raw_size // 8))


def test_our_block_of_the_same_data_has_the_engines_framing() -> None:
    raw = read_blocks(ENGINE_BLOCK.read_bytes())
    ours = compress_block(raw)
    method, size, raw_size = HEADER.unpack_from(ours, 16)
    assert (method, size, raw_size) == (METHOD_LZ4, len(ours) - 16, len(raw))
    assert ours[:16] == checksum(ours[16:])
    assert lz4.block.decompress(ours[16 + HEADER.size :], uncompressed_size=len(raw)) == raw


def test_the_writer_cuts_blocks_at_the_limit_and_keeps_every_byte() -> None:
    writer = BlockWriter(block_bytes=1000)
    data = os.urandom(3500)
    out = b"".join(writer.compress(data[i : i + 300]) for i in range(0, len(data), 300))
    out += writer.flush()
    assert read_blocks(out) == data
    sizes = []
    position = 0
    while position < len(out):
        _, size, raw_size = HEADER.unpack_from(out, position + 16)
        sizes.append(raw_size)
        position += 16 + size
    assert sizes == [1000, 1000, 1000, 500]
    assert writer.flush() == b""


def test_nothing_is_sent_for_an_empty_result() -> None:
    writer = BlockWriter()
    assert writer.compress(b"") == b""
    assert writer.flush() == b""
    assert read_blocks(b"") == b""


def test_large_output_goes_out_in_blocks_of_one_mebibyte() -> None:
    writer = BlockWriter()
    out = writer.compress(b"1\n" * BLOCK_BYTES)  # two blocks' worth
    assert HEADER.unpack_from(out, 16)[2] == BLOCK_BYTES
    assert read_blocks(out + writer.flush()) == b"1\n" * BLOCK_BYTES


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-1], "runs past"),
        (lambda b: b[:20], "truncated"),
        (lambda b: b[:16] + b"\x90" + b[17:], "method 0x90"),
        (lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:], "checksum"),
        (lambda b: bytes([b[0] ^ 1]) + b[1:], "checksum"),
    ],
)
def test_damaged_blocks_are_refused(damage: object, message: str) -> None:
    block = compress_block(b"some result rows\n" * 100)
    with pytest.raises(CompressedBlockError, match=message):
        read_blocks(damage(block))  # type: ignore[operator]
