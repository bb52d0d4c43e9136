"""The hand-written chunk encoder must write exactly the bytes fastavro writes."""

from __future__ import annotations

import io
import random

import fastavro
import pytest
from fastavro.schema import parse_schema

from schemas import Codec, EventType
from schemas.codec import SCHEMA_DIR, encode_chunk_body, load_schema

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
CHUNK_SCHEMA = load_schema(SCHEMA_DIR / "chunk.avsc")
PARSED = parse_schema(CHUNK_SCHEMA)


def fastavro_body(record: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, PARSED, record)
    return buffer.getvalue()


def edge_longs(low: int, high: int) -> list[int]:
    """Values around every varint length boundary (7-bit groups), both signs, and the limits."""
    values = {0, 1, -1, low, high, low + 1, high - 1}
    for bits in range(1, 64):
        for value in (2**bits - 1, 2**bits, -(2**bits), -(2**bits) - 1):
            if low <= value <= high:
                values.add(value)
    return sorted(values)


def random_text(rng: random.Random) -> str:
    alphabets = ("abc-0123456789", "éß€中文😀\u0000\u007f\u0080\uffff", "\U0010ffff𝄞")
    return "".join(rng.choice(rng.choice(alphabets)) for _ in range(rng.randrange(0, 80)))


def random_record(rng: random.Random) -> dict[str, object]:
    data = rng.randbytes(rng.choice((0, 1, 127, 128, 300, 16_384, rng.randrange(0, 70_000))))
    return {
        "request_id": random_text(rng),
        "seq": rng.choice((rng.randrange(INT_MIN, INT_MAX + 1), *edge_longs(INT_MIN, INT_MAX))),
        "offset_ns": rng.choice((rng.getrandbits(rng.randrange(1, 64)), *edge_longs(0, LONG_MAX))),
        "data": data,
        "size": rng.choice((len(data), *edge_longs(LONG_MIN, LONG_MAX))),
        "truncated": rng.random() < 0.5,
        "delivered": rng.random() < 0.5,
    }


def test_the_encoder_knows_every_field_of_the_chunk_schema() -> None:
    # encode_chunk_body hard-codes this layout; a schema change must update it (and this test).
    assert [(f["name"], f["type"]) for f in CHUNK_SCHEMA["fields"]] == [
        ("request_id", "string"),
        ("seq", "int"),
        ("offset_ns", "long"),
        ("data", "bytes"),
        ("size", "long"),
        ("truncated", "boolean"),
        ("delivered", "boolean"),
    ]


def test_random_records_encode_identically_to_fastavro() -> None:
    rng = random.Random(7)
    for _ in range(5_000):
        record = random_record(rng)
        assert encode_chunk_body(record) == fastavro_body(record), record


@pytest.mark.parametrize("value", edge_longs(LONG_MIN, LONG_MAX))
def test_every_varint_length_boundary_matches_fastavro(value: int) -> None:
    record = {
        "request_id": "r",
        "seq": max(INT_MIN, min(INT_MAX, value)),
        "offset_ns": value,
        "data": b"",
        "size": value,
        "truncated": False,
        "delivered": True,
    }
    assert encode_chunk_body(record) == fastavro_body(record)


def test_missing_flags_take_the_schema_defaults() -> None:
    record: dict[str, object] = {
        "request_id": "r", "seq": 1, "offset_ns": 2, "data": b"x", "size": 1,
    }  # fmt: skip
    assert encode_chunk_body(record) == fastavro_body(
        {**record, "truncated": False, "delivered": True}
    )


def test_codec_uses_the_fast_path_and_still_round_trips() -> None:
    codec = Codec()
    record = random_record(random.Random(1))
    encoded = codec.encode(EventType.CHUNK, record)
    assert encoded[10:] == encode_chunk_body(record)
    assert codec.decode(encoded).record == record


def test_a_lone_surrogate_in_the_request_id_fails_like_fastavro() -> None:
    record = {**random_record(random.Random(2)), "request_id": "\ud800"}
    with pytest.raises(UnicodeEncodeError):
        fastavro_body(record)
    with pytest.raises(UnicodeEncodeError):
        encode_chunk_body(record)
