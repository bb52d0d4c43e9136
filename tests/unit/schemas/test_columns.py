"""Events decoded into columns (``Codec.columns``) hold exactly what ``Codec.decode`` returns,
and an event ``decode`` refuses is refused the same way, leaving the columns untouched."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from schemas import Codec, CodecError, EventType
from schemas.codec import MAGIC, ColumnDecoder, schema_fingerprint
from schemas.reader import compile_column_reader
from tests.unit.schemas.test_reader import CORRUPT_CHUNK_BODIES, OLDER_WRITERS, older, same
from tests.unit.schemas.test_writer import LONG_EDGES, SCHEMAS, fastavro_body, random_value

CHUNK_FIELDS = tuple(f["name"] for f in SCHEMAS[EventType.CHUNK]["fields"])
# Fields a reader of today fills with defaults when an older chunk writer lacked them.
DEFAULTED = ("truncated", "delivered")


def outcome(codec: Codec, message: bytes) -> tuple[str, Any]:
    try:
        return "value", codec.decode(message)
    except CodecError as exc:
        return "error", str(exc)


def assert_columns_hold_what_decode_returns(
    codec: Codec, wanted: Mapping[EventType, Sequence[str]], messages: Sequence[bytes]
) -> ColumnDecoder:
    """Feed every message; each must be taken (same values), declined (not wanted) or refused
    (same CodecError), exactly as ``decode`` treats it."""
    columns = codec.columns(wanted)
    headers = {MAGIC + fp for fp, writer in codec._writers.items() if writer.type in wanted}
    expected: dict[EventType, list[list[Any]]] = {t: [[] for _ in f] for t, f in wanted.items()}
    for message in messages:
        before = {t: [list(c) for c in cols] for t, cols in columns.columns.items()}
        theirs = outcome(codec, message)
        try:
            ours: tuple[str, Any] = ("value", columns.append(message))
        except CodecError as exc:
            ours = ("error", str(exc))
        if theirs[0] == "error":
            # An event of a wanted type is refused with decode's own error; other bytes are
            # declined (decode then refuses them).
            assert ours == (theirs if message[:10] in headers else ("value", None)), message
            assert columns.columns == before, message  # nothing appended on failure
            continue
        decoded = theirs[1]
        if decoded.type not in wanted:
            assert ours == ("value", None)
            assert columns.columns == before
            continue
        assert ours == ("value", decoded.type)
        for column, name in zip(expected[decoded.type], wanted[decoded.type], strict=True):
            column.append(decoded.record[name])
    for event_type, cols in expected.items():
        assert len(columns.columns[event_type]) == len(cols)
        for ours_column, theirs_column in zip(columns.columns[event_type], cols, strict=True):
            assert same(ours_column, theirs_column)
    return columns


def encoded_random(codec: Codec, rng: random.Random, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        event_type = rng.choice(list(EventType))
        out.append(codec.encode(event_type, random_value(SCHEMAS[event_type], rng)))
    return out


def written_by(writer: Mapping[str, Any], record: Mapping[str, Any]) -> bytes:
    return MAGIC + schema_fingerprint(writer) + fastavro_body(writer, record)


@pytest.mark.parametrize(
    "wanted",
    [
        {EventType.CHUNK: CHUNK_FIELDS},
        {EventType.CHUNK: ("data", "request_id")},  # a subset, in another order
        {t: tuple(f["name"] for f in SCHEMAS[t]["fields"]) for t in EventType},
    ],
    ids=["chunks", "chunk-subset", "every-type"],
)
def test_random_events_of_every_type_land_in_the_columns_decode_would_fill(
    wanted: Mapping[EventType, Sequence[str]],
) -> None:
    codec = Codec()
    rng = random.Random(f"columns-{sorted(wanted)}")
    assert_columns_hold_what_decode_returns(codec, wanted, encoded_random(codec, rng, 600))


def test_every_varint_length_boundary_lands_in_the_columns_like_decode() -> None:
    codec = Codec()
    base = {"request_id": "r", "seq": 1, "data": b"", "truncated": True, "delivered": False}
    messages = [
        codec.encode(EventType.CHUNK, {**base, "offset_ns": value, "size": -value - 1})
        for value in LONG_EDGES
    ]
    assert_columns_hold_what_decode_returns(codec, {EventType.CHUNK: CHUNK_FIELDS}, messages)


def test_an_older_writer_schema_fills_the_defaults_decode_fills() -> None:
    writer = OLDER_WRITERS[EventType.CHUNK]
    assert {f["name"] for f in writer["fields"]}.isdisjoint(DEFAULTED)
    codec = Codec(extra_writer_schemas=[writer])
    rng = random.Random("older-chunks")
    messages = [written_by(writer, random_value(writer, rng)) for _ in range(200)]
    columns = assert_columns_hold_what_decode_returns(
        codec, {EventType.CHUNK: CHUNK_FIELDS}, messages
    )
    truncated, delivered = (
        columns.columns[EventType.CHUNK][CHUNK_FIELDS.index(f)] for f in DEFAULTED
    )
    assert set(truncated) == {False}  # the schema's defaults
    assert set(delivered) == {True}


def test_a_writer_schema_only_fastavro_reads_still_lands_in_the_columns() -> None:
    # A three-way union is not compiled: these chunks take the codec's fastavro path.
    writer = older(
        SCHEMAS[EventType.CHUNK], set(),
        [{"name": "legacy", "type": ["null", "string", "long"], "default": None}],
    )  # fmt: skip
    assert compile_column_reader(writer, SCHEMAS[EventType.CHUNK], CHUNK_FIELDS) is None
    codec = Codec(extra_writer_schemas=[writer])
    rng = random.Random("fastavro-chunks")
    messages = [written_by(writer, random_value(writer, rng)) for _ in range(100)]
    assert_columns_hold_what_decode_returns(codec, {EventType.CHUNK: CHUNK_FIELDS}, messages)


def test_a_writer_schema_added_later_is_read_into_columns_too() -> None:
    codec = Codec()
    codec.columns({EventType.CHUNK: CHUNK_FIELDS})  # compiled before the writer is known
    writer = OLDER_WRITERS[EventType.CHUNK]
    codec.add_writer_schema(writer)
    message = written_by(writer, random_value(writer, random.Random(7)))
    assert_columns_hold_what_decode_returns(codec, {EventType.CHUNK: CHUNK_FIELDS}, [message])


def test_corrupt_truncated_and_foreign_bytes_are_refused_exactly_as_decode_refuses_them() -> None:
    codec = Codec()
    rng = random.Random("corrupt-columns")
    chunks = [
        codec.encode(EventType.CHUNK, random_value(SCHEMAS[EventType.CHUNK], rng))
        for _ in range(10)
    ]
    messages = [message[:cut] for message in chunks[:4] for cut in range(len(message))]
    for _ in range(2000):
        message = bytearray(rng.choice(chunks))
        for _ in range(rng.choice((1, 2, 4))):
            position = rng.randrange(10, len(message))  # the body: the header picks the reader
            message[position] = rng.choice((0, 1, 2, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        messages.append(bytes(message))
    messages += [b"", b"\x00garbage", MAGIC + b"\x00" * 8 + b"\x01", MAGIC + b"\xff" * 12]
    columns = assert_columns_hold_what_decode_returns(
        codec, {EventType.CHUNK: CHUNK_FIELDS}, messages
    )
    assert 0 < len(columns.columns[EventType.CHUNK][0]) < len(messages)  # some taken, some not


@pytest.mark.parametrize("body", CORRUPT_CHUNK_BODIES)
def test_a_corrupt_chunk_gets_decodes_reason_and_leaves_the_columns_alone(body: bytes) -> None:
    codec = Codec()
    message = MAGIC + schema_fingerprint(SCHEMAS[EventType.CHUNK]) + body
    columns = codec.columns({EventType.CHUNK: CHUNK_FIELDS})
    with pytest.raises(CodecError) as theirs:
        codec.decode(message)
    with pytest.raises(CodecError) as ours:
        columns.append(message)
    assert str(ours.value) == str(theirs.value)
    assert columns.columns[EventType.CHUNK] == [[] for _ in CHUNK_FIELDS]


def test_a_varint_only_fastavro_reads_is_taken_with_fastavros_value() -> None:
    schema = SCHEMAS[EventType.CHUNK]
    record = {"request_id": "r", "seq": 1, "offset_ns": 2, "data": b"x", "size": 1}
    padded = b"\x82\x00" + fastavro_body(schema, record)[1:]  # 0x80 0x00 for a length of 1
    message = MAGIC + schema_fingerprint(schema) + padded
    assert_columns_hold_what_decode_returns(Codec(), {EventType.CHUNK: CHUNK_FIELDS}, [message])


def test_asking_for_a_field_the_event_does_not_have_is_an_error() -> None:
    with pytest.raises(ValueError, match="no fields"):
        Codec().columns({EventType.CHUNK: ("request_id", "body")})
