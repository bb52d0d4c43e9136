"""The compiled Avro writer must write exactly the bytes fastavro writes, for every schema."""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Mapping
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema

from schemas import Codec, EventType
from schemas.codec import SCHEMA_DIR, load_schema
from schemas.writer import compile_writer, zigzag_varint

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
SCHEMAS = {t: load_schema(SCHEMA_DIR / f"{t.value}.avsc") for t in EventType}


def fastavro_body(schema: Mapping[str, Any], record: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parse_schema(dict(schema)), record)
    return buffer.getvalue()


def writer_for(schema: Mapping[str, Any]) -> Callable[..., bytes]:
    writer = compile_writer(schema)
    assert writer is not None
    return writer


def edge_ints(low: int, high: int) -> list[int]:
    """Values around every varint length boundary (7-bit groups), both signs, and the limits."""
    values = {0, 1, -1, low, high, low + 1, high - 1}
    for bits in range(1, 64):
        for value in (2**bits - 1, 2**bits, -(2**bits), -(2**bits) - 1):
            if low <= value <= high:
                values.add(value)
    return sorted(values)


INT_EDGES, LONG_EDGES = edge_ints(INT_MIN, INT_MAX), edge_ints(LONG_MIN, LONG_MAX)


def random_text(rng: random.Random) -> str:
    alphabets = ("abc-0123456789", "éß€中文😀\u0000\u007f\u0080\uffff", "\U0010ffff𝄞")
    return "".join(rng.choice(rng.choice(alphabets)) for _ in range(rng.randrange(0, 80)))


def random_value(schema: Any, rng: random.Random) -> Any:
    """A random value of any type our schemas use, biased towards edge values."""
    if isinstance(schema, list):
        return None if rng.random() < 0.3 else random_value(schema[1], rng)
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "record":
        return {f["name"]: random_value(f["type"], rng) for f in schema["fields"]}
    if kind == "array":
        return [random_value(schema["items"], rng) for _ in range(rng.choice((0, 1, 3, 20)))]
    if kind == "Header":
        return {"name": random_text(rng), "value": random_text(rng)}
    if kind == "int":
        return rng.choice((rng.randrange(INT_MIN, INT_MAX + 1), *INT_EDGES))
    if kind == "long":
        return rng.choice((rng.getrandbits(rng.randrange(1, 63)), *LONG_EDGES))
    if kind == "string":
        return random_text(rng)
    if kind == "bytes":
        return rng.randbytes(rng.choice((0, 1, 127, 128, 300, rng.randrange(0, 20_000))))
    if kind == "boolean":
        return rng.random() < 0.5
    raise AssertionError(f"no generator for {schema!r}")


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_event_schema_compiles(event_type: EventType) -> None:
    assert compile_writer(SCHEMAS[event_type]) is not None


@pytest.mark.parametrize("event_type", list(EventType))
def test_random_records_encode_identically_to_fastavro(event_type: EventType) -> None:
    schema = SCHEMAS[event_type]
    write = writer_for(schema)
    rng = random.Random(event_type.value)
    for _ in range(300):
        record = random_value(schema, rng)
        assert write(record) == fastavro_body(schema, record), record
        # The codec passes the single-object header to be joined in front, in the same join.
        assert write(record, b"\xc3\x01head") == b"\xc3\x01head" + write(record)


@pytest.mark.parametrize("value", LONG_EDGES)
def test_every_varint_length_boundary_matches_fastavro(value: int) -> None:
    assert zigzag_varint(value) == fastavro_body({"type": "long"}, value)  # type: ignore[arg-type]


def test_missing_fields_take_the_schema_defaults() -> None:
    schema = SCHEMAS[EventType.CHUNK]
    record = {"request_id": "r", "seq": 1, "offset_ns": 2, "data": b"x", "size": 1}
    assert writer_for(schema)(record) == fastavro_body(
        schema, {**record, "truncated": False, "delivered": True}
    )


def test_a_missing_required_field_is_an_error() -> None:
    with pytest.raises(ValueError, match="seq"):
        writer_for(SCHEMAS[EventType.CHUNK])({"request_id": "r"})


def test_a_lone_surrogate_fails_like_fastavro() -> None:
    schema = SCHEMAS[EventType.CHUNK]
    record = {**random_value(schema, random.Random(2)), "request_id": "\ud800"}
    with pytest.raises(UnicodeEncodeError):
        fastavro_body(schema, record)
    with pytest.raises(UnicodeEncodeError):
        writer_for(schema)(record)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "record", "name": "M", "fields": [{"name": "m", "type": {"type": "map",
                                                                         "values": "string"}}]},
        {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["string", "long"]}]},
        {"type": "record", "name": "F", "fields": [{"name": "f", "type": "double"}]},
        {"type": "record", "name": "N", "fields": [{"name": "next", "type": ["null", "N"]}]},
    ],
)  # fmt: skip
def test_unsupported_types_fall_back_to_fastavro(schema: dict[str, Any]) -> None:
    assert compile_writer(schema) is None


def test_the_codec_writes_what_fastavro_writes_and_reads_it_back() -> None:
    codec = Codec()
    for event_type in EventType:
        record = random_value(SCHEMAS[event_type], random.Random(1))
        encoded = codec.encode(event_type, record)
        assert encoded[10:] == fastavro_body(SCHEMAS[event_type], record)
        assert codec.decode(encoded).type is event_type
