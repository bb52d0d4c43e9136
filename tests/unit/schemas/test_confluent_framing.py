"""Confluent framing in the codec: 00 + 4-byte schema id + the same Avro body (docs/EVENTS.md)."""

from __future__ import annotations

import json

import pytest

from schemas import Codec, CodecError, EventType
from schemas.codec import SCHEMA_DIR, load_schema
from tests.unit.schemas.test_codec import chunk

IDS = {EventType.REQUEST: 7, EventType.CHUNK: 8, EventType.COMPLETED: 9}


def confluent_codec() -> Codec:
    codec = Codec()
    codec.frame_with_schema_ids(IDS)
    return codec


def test_value_is_zero_schema_id_then_the_single_object_body() -> None:
    single = Codec().encode(EventType.CHUNK, chunk())
    framed = confluent_codec().encode(EventType.CHUNK, chunk())
    assert framed[:5] == b"\x00\x00\x00\x00\x08"
    assert framed[5:] == single[10:]


def test_a_reader_told_the_ids_decodes_both_framings() -> None:
    reader = Codec()
    reader.add_schema_id(8, json.dumps(load_schema(SCHEMA_DIR / "chunk.avsc")))
    framed = confluent_codec().encode(EventType.CHUNK, chunk(seq=5))
    single = Codec().encode(EventType.CHUNK, chunk(seq=6))
    assert reader.decode(framed) == (EventType.CHUNK, chunk(seq=5))
    assert reader.decode(single) == (EventType.CHUNK, chunk(seq=6))


def test_columns_read_both_framings_in_one_batch() -> None:
    reader = Codec()
    reader.add_schema_id(8, load_schema(SCHEMA_DIR / "chunk.avsc"))
    columns = reader.columns({EventType.CHUNK: ("seq", "size")})
    assert columns.append(confluent_codec().encode(EventType.CHUNK, chunk(seq=1, size=3)))
    assert columns.append(Codec().encode(EventType.CHUNK, chunk(seq=2, size=4)))
    assert columns.columns[EventType.CHUNK] == [[1, 2], [3, 4]]


def test_an_unknown_schema_id_is_refused_with_what_to_do() -> None:
    framed = confluent_codec().encode(EventType.CHUNK, chunk())
    with pytest.raises(CodecError, match=r"unknown schema id 8.*LOGORHYTHMS_SCHEMA_REGISTRY_URL"):
        Codec().decode(framed)
    # Not taken as columns: the batch decoder then decodes it, and gets the error above.
    assert Codec().columns({EventType.CHUNK: ("seq",)}).append(framed) is None


def test_knows_only_the_ids_it_was_told() -> None:
    reader = Codec()
    reader.add_schema_id(3, load_schema(SCHEMA_DIR / "request.avsc"))
    assert reader.knows_schema_id(3)
    assert not reader.knows_schema_id(4)


def test_a_schema_that_is_not_an_event_is_refused() -> None:
    other = {"type": "record", "name": "Other", "namespace": "x", "fields": []}
    with pytest.raises(ValueError, match="not one of the exchange event schemas"):
        Codec().add_schema_id(1, other)


def test_every_event_type_needs_an_id() -> None:
    with pytest.raises(ValueError, match="no schema id for completed"):
        Codec().frame_with_schema_ids({EventType.REQUEST: 1, EventType.CHUNK: 2})


@pytest.mark.parametrize("schema_id", [-1, 2**32])
def test_ids_outside_four_bytes_are_refused(schema_id: int) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        Codec().add_schema_id(schema_id, load_schema(SCHEMA_DIR / "chunk.avsc"))


def test_garbage_is_neither_framing() -> None:
    with pytest.raises(CodecError, match="nor a Confluent-framed one"):
        Codec().decode(b"\x01\x02\x03")
