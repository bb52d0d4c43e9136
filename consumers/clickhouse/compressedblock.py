"""ClickHouse's own compressed blocks, which ``?compress=1`` asks the HTTP interface for (pure).

JDBC (``com.clickhouse:jdbc-v2``) asks for them by default. The response body is a sequence of
blocks, each::

    16 bytes  CityHash128 (CityHash v1.0.2) of the 9-byte header and the compressed data,
              as two little-endian 64-bit halves (src/Compression/CompressedWriteBuffer.cpp)
     1 byte   method: 0x82 for LZ4
     4 bytes  compressed size, the 9-byte header included (little-endian)
     4 bytes  uncompressed size (little-endian)
     n bytes  one LZ4 block (no frame, no size prefix)

The byte order of the checksum was checked against a MergeTree ``.bin`` file that the engine
itself wrote (tests/unit/consumers/clickhouse/test_compressedblock.py keeps such a block as
a fixture).
"""

from __future__ import annotations

import struct

import lz4.block
from clickhouse_cityhash.cityhash import CityHash128

METHOD_LZ4 = 0x82
HEADER = struct.Struct("<BII")  # method, compressed size with header, uncompressed size
CHECKSUM_BYTES = 16
# ClickHouse's HTTP output buffer (DBMS_DEFAULT_BUFFER_SIZE): at most this much per block.
BLOCK_BYTES = 1024 * 1024
_LOW_64 = (1 << 64) - 1


class CompressedBlockError(Exception):
    """A block whose framing or checksum is wrong."""

    retriable = False


def checksum(data: bytes) -> bytes:
    """ClickHouse's 16-byte block checksum of ``data`` (the header and compressed bytes)."""
    value: int = CityHash128(data)
    # The binding returns the pair as one integer, first half in the high bits; ClickHouse
    # writes the pair's halves in order, each little-endian.
    return struct.pack("<QQ", value >> 64, value & _LOW_64)


def compress_block(raw: bytes) -> bytes:
    """One whole block: checksum, header, LZ4 data."""
    data: bytes = lz4.block.compress(raw, store_size=False)
    header = HEADER.pack(METHOD_LZ4, HEADER.size + len(data), len(raw))
    return checksum(header + data) + header + data


class BlockWriter:
    """Cuts a stream of output into compressed blocks of at most ``block_bytes`` raw bytes.

    Has the shape of the HTTP encoders (``compress`` then ``flush``), so it layers under them.
    """

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self._block_bytes = block_bytes
        self._pending = bytearray()

    def compress(self, data: bytes) -> bytes:
        self._pending += data
        if len(self._pending) < self._block_bytes:
            return b""
        out = bytearray()
        view = memoryview(self._pending)
        whole = len(self._pending) - len(self._pending) % self._block_bytes
        for start in range(0, whole, self._block_bytes):
            out += compress_block(bytes(view[start : start + self._block_bytes]))
        view.release()
        del self._pending[:whole]
        return bytes(out)

    def flush(self) -> bytes:
        if not self._pending:
            return b""
        block = compress_block(bytes(self._pending))
        self._pending.clear()
        return block


def read_blocks(body: bytes) -> bytes:
    """The raw bytes of a sequence of blocks, each checksum verified (clients and tests)."""
    out = bytearray()
    position = 0
    while position < len(body):
        head_end = position + CHECKSUM_BYTES + HEADER.size
        if head_end > len(body):
            raise CompressedBlockError(f"truncated block header at byte {position}")
        method, size, raw_size = HEADER.unpack_from(body, position + CHECKSUM_BYTES)
        if method != METHOD_LZ4:
            raise CompressedBlockError(f"unknown compression method 0x{method:02x}")
        end = position + CHECKSUM_BYTES + size
        if size < HEADER.size or end > len(body):
            raise CompressedBlockError(f"block at byte {position} runs past the body")
        framed = body[position + CHECKSUM_BYTES : end]
        if checksum(framed) != body[position : position + CHECKSUM_BYTES]:
            raise CompressedBlockError(f"checksum mismatch in the block at byte {position}")
        out += lz4.block.decompress(framed[HEADER.size :], uncompressed_size=raw_size)
        position = end
    return bytes(out)
