"""The runner's decode step: events a sink takes as columns are the same events, with the same
token and the same dead letters, as when every event becomes a ``Record``."""

from __future__ import annotations

import random

from aiokafka.structs import ConsumerRecord

from consumers.clickhouse.sink import CHUNK_FIELDS
from consumers.decode import decode_batch
from consumers.sink import Batch, EventColumns, Record
from schemas import Codec, CodecError, EventType
from schemas.codec import MAGIC, schema_fingerprint
from tests.unit.schemas.test_reader import OLDER_WRITERS
from tests.unit.schemas.test_writer import SCHEMAS, fastavro_body, random_value

Poison = list[tuple[ConsumerRecord[bytes, bytes], str]]


def fetched(values: list[bytes | None], rng: random.Random) -> list[ConsumerRecord[bytes, bytes]]:
    """As aiokafka hands them over: three partitions, rising offsets, some with headers."""
    out = []
    offsets = [rng.randrange(1000) for _ in range(3)]
    for value in values:
        partition = rng.randrange(3)
        offsets[partition] += rng.choice((1, 1, 2))
        headers = [("traceparent", b"00-abc")] if rng.random() < 0.3 else []
        out.append(
            ConsumerRecord(
                "events", partition, offsets[partition], 0, 0, b"key", value, None, 3,
                len(value or b""), headers,
            )
        )  # fmt: skip
    return out


def every_event_a_record(
    codec: Codec, pending: list[ConsumerRecord[bytes, bytes]]
) -> tuple[list[Record], Poison]:
    """The decode step as it was before columns: the reference."""
    good: list[Record] = []
    poison: Poison = []
    for raw in pending:
        try:
            event = codec.decode(raw.value or b"")
        except CodecError as exc:
            poison.append((raw, f"undecodable: {exc}"))
            continue
        headers = tuple(raw.headers or ())
        good.append(
            Record(raw.topic, raw.partition, raw.offset, raw.key, raw.value, event, headers)
        )
    return good, poison


def mixed_traffic(codec: Codec, rng: random.Random) -> list[bytes | None]:
    older = OLDER_WRITERS[EventType.CHUNK]
    values: list[bytes | None] = []
    for _ in range(400):
        event_type = rng.choice([EventType.CHUNK] * 6 + [EventType.REQUEST, EventType.COMPLETED])
        values.append(codec.encode(event_type, random_value(SCHEMAS[event_type], rng)))
    chunk = codec.encode(EventType.CHUNK, random_value(SCHEMAS[EventType.CHUNK], rng))
    values += [
        MAGIC + schema_fingerprint(older) + fastavro_body(older, random_value(older, rng)),
        chunk[:-3],  # a truncated chunk
        chunk[:10] + b"\x4a" + "é".encode()[:1] + b"x" * 35,  # a chunk with invalid UTF-8
        b"\x00garbage that is not avro",
        MAGIC + b"\xff" * 12,  # an unknown writer schema
        None,  # a tombstone
    ]
    rng.shuffle(values)
    return values


def test_chunks_as_columns_are_the_records_the_runner_made_before() -> None:
    codec = Codec(extra_writer_schemas=[OLDER_WRITERS[EventType.CHUNK]])
    rng = random.Random("decode-batch")
    for _ in range(5):
        pending = fetched(mixed_traffic(codec, rng), rng)
        good, poison = every_event_a_record(codec, pending)

        batch, ours = decode_batch(codec, pending, {EventType.CHUNK: CHUNK_FIELDS})

        assert ours == poison  # the same records with the same reasons, in order
        assert [r.value for r, _ in poison].count(None) == 1
        chunks = batch.columns[EventType.CHUNK]
        assert list(batch.records) == [r for r in good if r.event.type is not EventType.CHUNK]
        assert list(chunks.records()) == [r for r in good if r.event.type is EventType.CHUNK]
        assert batch.token == Batch.of(good).token
        assert batch.size() == len(good)
        every = list(batch.every_record())
        assert every == sorted(good, key=lambda r: (r.partition, r.offset))


def test_a_sink_that_takes_no_columns_gets_every_event_as_a_record() -> None:
    codec = Codec()
    rng = random.Random("no-columns")
    pending = fetched(mixed_traffic(codec, rng), rng)
    good, poison = every_event_a_record(codec, pending)
    batch, ours = decode_batch(codec, pending, {})
    assert ours == poison
    assert batch == Batch.of(good)
    assert not batch.columns


def test_column_records_slice_like_the_records_they_stand_for() -> None:
    codec = Codec()
    rng = random.Random("slices")
    values = [
        codec.encode(EventType.CHUNK, random_value(SCHEMAS[EventType.CHUNK], rng)) for _ in range(9)
    ]
    good, _ = every_event_a_record(codec, fetched(list(values), rng))
    columns = EventColumns.of(EventType.CHUNK, CHUNK_FIELDS, good)
    view = columns.records()
    assert len(view) == 9
    assert view[-1] == good[-1]
    assert list(view[:4]) == good[:4]
    assert list(view[4:][1:3]) == good[5:7]  # the ClickHouse sink bisects halves of halves
    both = columns + EventColumns.of(EventType.CHUNK, CHUNK_FIELDS, good[:2])
    assert list(both.records()) == [*good, *good[:2]]
    assert both.column("seq") == [r.event.record["seq"] for r in [*good, *good[:2]]]
