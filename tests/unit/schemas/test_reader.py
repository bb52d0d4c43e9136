"""The compiled Avro reader must return exactly what fastavro's schemaless_reader returns."""

from __future__ import annotations

import copy
import io
import random
from collections.abc import Mapping
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema

from schemas import Codec, CodecError, EventType
from schemas.codec import _HEADER_SIZE, MAGIC, SCHEMA_DIR, load_schema, schema_fingerprint
from schemas.reader import MalformedError, Reader, compile_reader
from tests.unit.schemas.test_writer import (
    INT_EDGES,
    LONG_EDGES,
    SCHEMAS,
    fastavro_body,
    random_value,
)

HISTORY = sorted((SCHEMA_DIR / "history").glob("*.avsc"))


def fastavro_read(writer: Mapping[str, Any], reader: Mapping[str, Any], body: bytes) -> Any:
    return fastavro.schemaless_reader(
        io.BytesIO(body), parse_schema(dict(writer)), parse_schema(dict(reader))
    )


def reader_for(writer: Mapping[str, Any], reader: Mapping[str, Any] | None = None) -> Reader:
    read = compile_reader(writer, reader or writer)
    assert read is not None
    return read


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types (an aware datetime equals one in another zone), keys in order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b and repr(a) == repr(b))


def outcome(read: Any) -> tuple[str, Any]:
    try:
        return "value", read()
    except Exception as exc:
        return "error", type(exc)


def assert_reads_like_fastavro(
    read: Reader, writer: Mapping[str, Any], reader: Mapping[str, Any], body: bytes
) -> None:
    """Canonical bytes (written by fastavro): the same value, or both fail (e.g. a timestamp
    outside what a datetime holds)."""
    theirs = outcome(lambda: fastavro_read(writer, reader, body))
    ours = outcome(lambda: read(b"xx" + body, 2))
    assert ours[0] == theirs[0], (body, ours, theirs)
    if ours[0] == "value":
        assert same(ours[1], theirs[1]), body


def older(schema: Mapping[str, Any], drop: set[str], add: list[dict[str, Any]]) -> dict[str, Any]:
    """An older writer version: fields it did not have yet, and fields it had and lost since."""
    out = copy.deepcopy(dict(schema))
    out["fields"] = [f for f in out["fields"] if f["name"] not in drop] + add
    return out


# Writer versions a reader of today must read: the fields with defaults were added later, and a
# field was once written that today's reader no longer knows.
OLDER_WRITERS = {
    EventType.CHUNK: older(
        SCHEMAS[EventType.CHUNK], {"truncated", "delivered"},
        [{"name": "legacy_note", "type": ["null", "string"], "default": None}],
    ),
    EventType.REQUEST: older(
        SCHEMAS[EventType.REQUEST], {"proxy_instance", "body_truncated", "model_sent"},
        [{"name": "legacy_count", "type": "int"}],
    ),
    EventType.COMPLETED: older(
        SCHEMAS[EventType.COMPLETED], {"upstream_status", "error_type"},
        [{"name": "legacy_headers", "type": {"type": "array", "items": "Header"}}],
    ),
}  # fmt: skip


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_event_schema_compiles(event_type: EventType) -> None:
    assert compile_reader(SCHEMAS[event_type], SCHEMAS[event_type]) is not None


@pytest.mark.parametrize("event_type", list(EventType))
def test_random_records_read_identically_to_fastavro(event_type: EventType) -> None:
    schema = SCHEMAS[event_type]
    read = reader_for(schema)
    rng = random.Random(f"read-{event_type.value}")
    for _ in range(300):
        assert_reads_like_fastavro(
            read, schema, schema, fastavro_body(schema, random_value(schema, rng))
        )


@pytest.mark.parametrize("event_type", list(EventType))
def test_older_writers_read_with_the_defaults_fastavro_fills(event_type: EventType) -> None:
    writer, reader = OLDER_WRITERS[event_type], SCHEMAS[event_type]
    read = reader_for(writer, reader)
    rng = random.Random(f"evolve-{event_type.value}")
    for _ in range(200):
        assert_reads_like_fastavro(
            read, writer, reader, fastavro_body(writer, random_value(writer, rng))
        )


def test_history_schemas_read_like_fastavro() -> None:
    """Every retired schema in schemas/history (none yet), plus the made-up older writers."""
    writers = [load_schema(path) for path in HISTORY] + list(OLDER_WRITERS.values())
    for writer in writers:
        event_type = next(t for t in EventType if SCHEMAS[t]["name"] == writer["name"])
        reader = SCHEMAS[event_type]
        read = compile_reader(writer, reader)
        rng = random.Random(writer["name"])
        for _ in range(50):
            body = fastavro_body(writer, random_value(writer, rng))
            if read is None:  # the codec uses fastavro for this one
                message = MAGIC + schema_fingerprint(writer) + body
                decoded = Codec(extra_writer_schemas=[writer]).decode(message)
                assert same(decoded.record, fastavro_read(writer, reader, body))
            else:
                assert_reads_like_fastavro(read, writer, reader, body)


def test_int_is_promoted_to_long_as_fastavro_does() -> None:
    writer = {"type": "record", "name": "P", "fields": [{"name": "x", "type": "int"}]}
    reader = {"type": "record", "name": "P", "fields": [{"name": "x", "type": "long"}]}
    read = reader_for(writer, reader)
    for value in INT_EDGES:
        assert_reads_like_fastavro(read, writer, reader, fastavro_body(writer, {"x": value}))


@pytest.mark.parametrize("value", LONG_EDGES)
def test_every_varint_length_boundary_reads_like_fastavro(value: int) -> None:
    schema = SCHEMAS[EventType.CHUNK]
    record = {"request_id": "r", "seq": 1, "offset_ns": value, "data": b"", "size": value}
    assert_reads_like_fastavro(reader_for(schema), schema, schema, fastavro_body(schema, record))


def test_timestamps_are_the_aware_datetimes_fastavro_builds() -> None:
    schema = SCHEMAS[EventType.COMPLETED]
    read = reader_for(schema)
    rng = random.Random("ts")
    base = random_value(schema, rng)
    for micros in (
        0,
        1,
        -1,
        1_764_000_000_123_456,
        253_402_300_799_999_999,
        -62_135_596_800_000_000,
    ):
        body = fastavro_body(schema, {**base, "completed_at_us": micros})
        assert_reads_like_fastavro(read, schema, schema, body)


@pytest.mark.parametrize("event_type", list(EventType))
def test_corrupt_and_truncated_bodies_fail_or_read_exactly_like_fastavro(
    event_type: EventType,
) -> None:
    """Every truncation, and thousands of random byte edits: whenever fastavro reads the bytes
    the compiled reader reads the same or raises (the codec then asks fastavro); whenever
    fastavro fails, the compiled reader fails too."""
    schema = SCHEMAS[event_type]
    parsed = parse_schema(schema)
    read = reader_for(schema)
    rng = random.Random(f"corrupt-{event_type.value}")
    bodies = [fastavro_body(schema, random_value(schema, rng)) for _ in range(20)]
    damaged = [body[:cut] for body in bodies[:5] for cut in range(len(body))]
    for _ in range(3000):
        body = bytearray(rng.choice(bodies))
        for _ in range(rng.choice((1, 1, 2, 4))):
            body[rng.randrange(len(body))] = rng.choice(
                (0, 1, 2, 0x7F, 0x80, 0xFF, rng.randrange(256))
            )
        damaged.append(bytes(body))
    for body in damaged:
        theirs = outcome(lambda b=body: fastavro.schemaless_reader(io.BytesIO(b), parsed, None))
        ours = outcome(lambda b=body: read(b, 0))
        if ours[0] == "value":
            assert theirs[0] == "value", body
            assert same(ours[1], theirs[1]), body


def test_bytes_after_the_record_are_ignored_like_fastavro() -> None:
    schema = SCHEMAS[EventType.CHUNK]
    body = fastavro_body(schema, random_value(schema, random.Random(3)))
    assert same(reader_for(schema)(body + b"\x00junk", 0), fastavro_read(schema, schema, body))


def test_an_overlong_varint_is_left_to_fastavro() -> None:
    schema = {"type": "record", "name": "V", "fields": [{"name": "x", "type": "long"}]}
    with pytest.raises(MalformedError):
        reader_for(schema)(b"\xff" * 10 + b"\x01", 0)


# Chunk event bodies every reader must refuse, each for fastavro's reason.
CORRUPT_CHUNK_BODIES = [
    b"\x4a" + "é".encode()[:1] + b"x" * 35,  # invalid UTF-8 in request_id
    b"\x48" + b"r" * 36,  # ends after request_id
    b"\x01",  # negative string length
]


@pytest.mark.parametrize("body", CORRUPT_CHUNK_BODIES)
def test_the_codec_raises_the_same_codec_error_as_before(body: bytes) -> None:
    """Malformed bytes reach fastavro, so the reason dead-lettered with them is unchanged."""
    message = MAGIC + schema_fingerprint(SCHEMAS[EventType.CHUNK]) + body
    with pytest.raises(CodecError) as caught:
        Codec().decode(message)
    with pytest.raises(Exception) as direct:  # noqa: PT011 (fastavro raises assorted types)
        fastavro.schemaless_reader(
            io.BytesIO(message[_HEADER_SIZE:]), parse_schema(SCHEMAS[EventType.CHUNK]), None
        )
    assert str(caught.value) == f"corrupt chunk event: {direct.value!r}"


def test_the_codec_reads_what_only_fastavro_reads() -> None:
    """A varint written with a redundant byte (0x80 0x00 for 0) is valid Avro."""
    schema = SCHEMAS[EventType.CHUNK]
    record = {"request_id": "r", "seq": 1, "offset_ns": 2, "data": b"x", "size": 1}
    canonical = fastavro_body(schema, record)
    assert canonical[0] == 0x02  # the request_id's length, one byte
    padded = b"\x82\x00" + canonical[1:]
    header = MAGIC + schema_fingerprint(schema)
    assert same(Codec().decode(header + padded).record, fastavro_read(schema, schema, canonical))


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "record", "name": "M", "fields": [{"name": "m", "type": {"type": "map",
                                                                         "values": "string"}}]},
        {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["string", "long"]}]},
        {"type": "record", "name": "F", "fields": [{"name": "f", "type": "double"}]},
        {"type": "record", "name": "D", "fields": [{"name": "d", "type": {
            "type": "int", "logicalType": "date"}}]},
        {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"],
                                                       "default": None}]},
    ],
)  # fmt: skip
def test_unsupported_types_fall_back_to_fastavro(schema: dict[str, Any]) -> None:
    assert compile_reader(schema, schema) is None


def test_a_default_that_is_not_a_plain_literal_falls_back_to_fastavro() -> None:
    writer = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}
    reader = {
        **writer,
        "fields": [*writer["fields"], {"name": "b", "type": "bytes", "default": ""}],
    }
    assert compile_reader(writer, reader) is None
    assert compile_reader(writer, {**writer, "fields": [{"name": "a", "type": "string"}]}) is None


def test_the_codec_uses_the_compiled_reader_for_current_and_older_writers() -> None:
    codec = Codec(extra_writer_schemas=OLDER_WRITERS.values())
    for event_type, writer in OLDER_WRITERS.items():
        record = random_value(writer, random.Random(5))
        message = MAGIC + schema_fingerprint(writer) + fastavro_body(writer, record)
        decoded = codec.decode(message)
        assert decoded.type is event_type
        assert same(decoded.record, fastavro_read(writer, SCHEMAS[event_type], message[10:]))
        assert codec._writers[message[2:10]].fast is not None
