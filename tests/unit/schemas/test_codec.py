from __future__ import annotations

import copy
import io
import json

import fastavro
import pytest

from schemas import Codec, CodecError, EventType
from schemas.codec import MAGIC, SCHEMA_DIR, load_schema, schema_fingerprint


def chunk(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "request_id": "0190f1e2-0000-7000-8000-000000000001",
        "seq": 1,
        "offset_ns": 1234,
        "data": b"data: {}\n\n",
        "size": 10,
        "truncated": False,
        "delivered": True,
    }
    record.update(overrides)
    return record


def test_every_field_of_every_schema_is_documented() -> None:
    for event_type in EventType:
        schema = load_schema(SCHEMA_DIR / f"{event_type.value}.avsc")
        assert schema["doc"]
        for field in schema["fields"]:
            assert field.get("doc"), f"{event_type.value}.{field['name']} has no doc"


def test_single_object_header_names_the_writer_schema() -> None:
    codec = Codec()
    encoded = codec.encode(EventType.CHUNK, chunk())
    assert encoded[:2] == MAGIC == b"\xc3\x01"
    assert encoded[2:10] == schema_fingerprint(load_schema(SCHEMA_DIR / "chunk.avsc"))


def test_fingerprint_matches_the_avro_spec_vector() -> None:
    # Avro spec: CRC-64-AVRO of the canonical form "null" is 0x63dd24e7cc258f8a, little-endian.
    assert schema_fingerprint("null") == bytes.fromhex("8a8f25cce724dd63")


def test_round_trip_keeps_raw_bytes_exactly() -> None:
    codec = Codec()
    raw = bytes(range(256)) + "é€😀".encode()
    decoded = codec.decode(codec.encode(EventType.CHUNK, chunk(data=raw)))
    assert decoded.type is EventType.CHUNK
    assert decoded.record["data"] == raw


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"not avro at all", MAGIC + b"\x00" * 8 + b"\x01", b"\xc3\x01" + b"\xff" * 3],
)
def test_garbage_raises_codec_error(garbage: bytes) -> None:
    with pytest.raises(CodecError):
        Codec().decode(garbage)


def test_truncated_body_raises_codec_error() -> None:
    codec = Codec()
    encoded = codec.encode(EventType.CHUNK, chunk())
    with pytest.raises(CodecError):
        codec.decode(encoded[:-5])


def test_older_writer_is_read_by_newer_reader_with_defaults() -> None:
    current = load_schema(SCHEMA_DIR / "chunk.avsc")
    older = copy.deepcopy(current)
    older["fields"] = [f for f in older["fields"] if f["name"] not in {"truncated", "delivered"}]
    assert schema_fingerprint(older) != schema_fingerprint(current)

    buffer = io.BytesIO()
    buffer.write(MAGIC + schema_fingerprint(older))
    old_record = chunk()
    del old_record["truncated"], old_record["delivered"]
    fastavro.schemaless_writer(
        buffer, fastavro.parse_schema(json.loads(json.dumps(older))), old_record
    )

    with pytest.raises(CodecError, match="unknown writer schema"):
        Codec().decode(buffer.getvalue())
    decoded = Codec(extra_writer_schemas=[older]).decode(buffer.getvalue())
    assert decoded.record["truncated"] is False
    assert decoded.record["delivered"] is True
    assert decoded.record["data"] == b"data: {}\n\n"
