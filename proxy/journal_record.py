"""The journal's record format: the bytes of one record, and reading them back.

A segment file is a sequence of records ``[u32 length][u32 crc32(payload)][payload]``, big-endian,
where payload = ``[u16 key length][u32 value length][u16 header count]``, the key, the value, and
per header ``[u16 name length][u32 value length]``, the name (UTF-8) and the value. proxy/journal.py
owns the segments, the cursor and the locking; this module only turns records into bytes and back.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

Headers = list[tuple[str, bytes]]

RECORD_HEADER = struct.Struct(">II")  # payload length, crc32 of payload
_PAYLOAD_HEADER = struct.Struct(">HIH")  # key length, value length, header count
_HEADER_ITEM = struct.Struct(">HI")  # header name length, header value length
# A record can never be larger than this; a bigger length field means the bytes are damaged.
MAX_RECORD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalRecord:
    key: bytes
    value: bytes
    headers: Headers | None


def record_parts(key: bytes, value: bytes, headers: Headers | None) -> list[bytes]:
    """One whole record as the pieces to write one after the other, header and checksum first.

    The value is one of the pieces, not copied into a joined record: a 30 MB request event goes
    from the encoder to the file without a second and third copy in memory.
    """
    parts = [_PAYLOAD_HEADER.pack(len(key), len(value), len(headers or ())), key, value]
    for name, data in headers or ():
        raw = name.encode()
        parts += [_HEADER_ITEM.pack(len(raw), len(data)), raw, data]
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return [RECORD_HEADER.pack(sum(len(part) for part in parts), crc), *parts]


def encode_record(key: bytes, value: bytes, headers: Headers | None) -> bytes:
    """One whole record, header and checksum included, as it is appended to a segment."""
    return b"".join(record_parts(key, value, headers))


def decode_payload(payload: bytes) -> JournalRecord:
    """The record a checked payload holds; raises struct.error or UnicodeDecodeError on damage."""
    key_len, value_len, count = _PAYLOAD_HEADER.unpack_from(payload, 0)
    at = _PAYLOAD_HEADER.size
    key = payload[at : at + key_len]
    at += key_len
    value = payload[at : at + value_len]
    at += value_len
    headers: Headers = []
    for _ in range(count):
        name_len, data_len = _HEADER_ITEM.unpack_from(payload, at)
        at += _HEADER_ITEM.size
        name = payload[at : at + name_len].decode()
        at += name_len
        headers.append((name, payload[at : at + data_len]))
        at += data_len
    return JournalRecord(key=key, value=value, headers=headers if count else None)


def records(data: bytes) -> Iterator[JournalRecord]:
    """The readable records of a segment's bytes, in order, up to the first damage."""
    at = 0
    while at + RECORD_HEADER.size <= len(data):
        length, crc = RECORD_HEADER.unpack_from(data, at)
        payload = data[at + RECORD_HEADER.size : at + RECORD_HEADER.size + length]
        if not 0 < length <= MAX_RECORD_BYTES or len(payload) != length:
            return
        if zlib.crc32(payload) != crc:
            return
        try:
            yield decode_payload(payload)
        except (struct.error, UnicodeDecodeError):
            return
        at += RECORD_HEADER.size + length
