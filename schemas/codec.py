"""Avro single-object encoding of exchange events.

Every Kafka message value is ``C3 01`` + the 8-byte CRC-64-AVRO fingerprint of the writer schema +
the Avro binary body, so each message names the schema that wrote it and a reader can resolve an
older writer schema against its current one (fields added later take their defaults).

With Confluent framing on (``frame_with_schema_ids``), the value is ``00`` + the writer schema's
4-byte id in a schema registry (big-endian) + the same body, the framing that ClickHouse's
``AvroConfluent``, Flink's ``avro-confluent`` and Kafka Connect read. The codec decodes both
framings; ids it has not been told about (``add_schema_id``) are refused as unknown.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from schemas.reader import ColumnBinder, ColumnReader, Reader, compile_column_reader, compile_reader
from schemas.writer import compile_writer

SCHEMA_DIR = Path(__file__).resolve().parent
MAGIC = b"\xc3\x01"
_HEADER_SIZE = len(MAGIC) + 8
CONFLUENT_MAGIC = b"\x00"
_CONFLUENT_HEADER_SIZE = len(CONFLUENT_MAGIC) + 4
# Kafka record headers on every event, so a reader can route or skip a record without decoding
# it (docs/EVENTS.md): the event type, and the writer schema's fingerprint as 16 hex digits (the
# 8 bytes after C3 01 in the value, in that byte order).
EVENT_HEADER = "logorhythms.event"
SCHEMA_HEADER = "logorhythms.schema"


class EventType(StrEnum):
    """The three events of an exchange; the value is the schema file stem."""

    REQUEST = "request"
    CHUNK = "chunk"
    COMPLETED = "completed"


_TYPE_BY_RECORD_NAME = {
    "dev.logorhythms.exchange.Request": EventType.REQUEST,
    "dev.logorhythms.exchange.Chunk": EventType.CHUNK,
    "dev.logorhythms.exchange.Completed": EventType.COMPLETED,
}


class CodecError(Exception):
    """A message that cannot be decoded. Never retriable: the same bytes fail the same way."""

    retriable = False


class Decoded(NamedTuple):
    """A NamedTuple, not a frozen dataclass: as immutable, and cheaper to build once per event."""

    type: EventType
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Writer:
    type: EventType
    schema: Mapping[str, Any]
    parsed: Any
    # Compiled against the current reader schema; None when the pair needs fastavro.
    fast: Reader | None


def schema_fingerprint(schema: Mapping[str, Any] | str) -> bytes:
    """CRC-64-AVRO fingerprint of the schema's canonical form, in wire byte order."""
    plain = schema if isinstance(schema, str) else dict(schema)
    canonical = to_parsing_canonical_form(parse_schema(plain, _write_hint=False))
    # fastavro returns the fingerprint's little-endian bytes as hex, which is the wire order.
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def load_schema(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


class Codec:
    """Encodes with the current schemas; decodes anything written by a current or older schema."""

    def __init__(self, extra_writer_schemas: Iterable[Mapping[str, Any]] = ()) -> None:
        self._current: dict[EventType, tuple[bytes, Any]] = {}  # (framing header, schema)
        self._writer_fingerprint: dict[EventType, bytes] = {}
        # Compiled writers: less CPU than fastavro's, and byte-identical (decision 0006).
        self._fast: dict[EventType, Callable[[Mapping[str, Any], bytes], bytes] | None] = {}
        self._readers: dict[EventType, Any] = {}
        self._reader_schemas: dict[EventType, dict[str, Any]] = {}
        self._writers: dict[bytes, _Writer] = {}
        # Confluent framing: the 4-byte schema id (wire order) to the fingerprint it stands for.
        self._fingerprint_by_id: dict[bytes, bytes] = {}
        self._column_binders: dict[_ColumnSpec, dict[bytes, tuple[EventType, Any]]] = {}
        for event_type in EventType:
            schema = load_schema(SCHEMA_DIR / f"{event_type.value}.avsc")
            parsed = parse_schema(schema)
            header = MAGIC + schema_fingerprint(schema)
            self._current[event_type] = (header, parsed)
            self._writer_fingerprint[event_type] = header[len(MAGIC) :]
            self._fast[event_type] = compile_writer(schema)
            self._readers[event_type] = parsed
            self._reader_schemas[event_type] = schema
            self._writers[header[2:]] = _Writer(
                event_type, schema, parsed, compile_reader(schema, schema)
            )
        for path in sorted((SCHEMA_DIR / "history").glob("*.avsc")):
            self.add_writer_schema(load_schema(path))
        for extra in extra_writer_schemas:
            self.add_writer_schema(extra)

    def add_writer_schema(self, schema: Mapping[str, Any]) -> None:
        """Make messages written with an older version of one of our schemas readable."""
        full_name = f"{schema.get('namespace', '')}.{schema['name']}"
        event_type = _TYPE_BY_RECORD_NAME.get(full_name)
        if event_type is None:
            raise ValueError(f"{full_name} is not one of the exchange event schemas")
        fast = compile_reader(schema, self._reader_schemas[event_type])
        self._writers[schema_fingerprint(schema)] = _Writer(
            event_type, schema, parse_schema(dict(schema)), fast
        )
        self._column_binders.clear()  # compiled without this writer

    def add_schema_id(self, schema_id: int, schema: Mapping[str, Any] | str) -> None:
        """Decode Confluent-framed messages carrying ``schema_id``: the registry's id of
        ``schema``, which must be one of our event schemas (any version)."""
        plain = json.loads(schema) if isinstance(schema, str) else schema
        fingerprint_ = schema_fingerprint(plain)
        if fingerprint_ not in self._writers:
            self.add_writer_schema(plain)
        self._fingerprint_by_id[_schema_id_bytes(schema_id)] = fingerprint_
        self._column_binders.clear()

    def knows_schema_id(self, schema_id: int) -> bool:
        return _schema_id_bytes(schema_id) in self._fingerprint_by_id

    def frame_with_schema_ids(self, ids: Mapping[EventType, int]) -> None:
        """Encode every event type with Confluent framing, under its registry id in ``ids``."""
        missing = [t.value for t in EventType if t not in ids]
        if missing:
            raise ValueError(f"no schema id for {', '.join(missing)} events")
        for event_type, schema_id in ids.items():
            self.add_schema_id(schema_id, self._reader_schemas[event_type])
            parsed = self._current[event_type][1]
            self._current[event_type] = (CONFLUENT_MAGIC + _schema_id_bytes(schema_id), parsed)

    def fingerprint(self, event_type: EventType) -> bytes:
        """The current writer schema's fingerprint, as single-object messages carry it."""
        return self._writer_fingerprint[event_type]

    def event_headers(self, event_type: EventType) -> list[tuple[str, bytes]]:
        """The Kafka headers naming an event of this type and its writer schema (a new list)."""
        return [
            (EVENT_HEADER, event_type.value.encode()),
            (SCHEMA_HEADER, self.fingerprint(event_type).hex().encode()),
        ]

    def encode(self, event_type: EventType, record: Mapping[str, Any]) -> bytes:
        header, parsed = self._current[event_type]
        fast = self._fast[event_type]
        if fast is not None:
            return fast(record, header)
        buffer = io.BytesIO()
        buffer.write(header)
        fastavro.schemaless_writer(buffer, parsed, record)
        return buffer.getvalue()

    def decode(self, data: bytes) -> Decoded:
        if data[:1] == CONFLUENT_MAGIC and len(data) >= _CONFLUENT_HEADER_SIZE:
            fingerprint_ = self._fingerprint_by_id.get(data[1:_CONFLUENT_HEADER_SIZE])
            if fingerprint_ is None:
                raise CodecError(
                    f"unknown schema id {int.from_bytes(data[1:_CONFLUENT_HEADER_SIZE])} in a "
                    "Confluent-framed message: set LOGORHYTHMS_SCHEMA_REGISTRY_URL to the "
                    "registry the producer used"
                )
            start = _CONFLUENT_HEADER_SIZE
        elif len(data) >= _HEADER_SIZE and data[:2] == MAGIC:
            fingerprint_, start = data[2:_HEADER_SIZE], _HEADER_SIZE
        else:
            raise CodecError(
                "not an Avro single-object message (missing C3 01 marker) "
                "nor a Confluent-framed one (00 and a schema id)"
            )
        writer = self._writers.get(fingerprint_)
        if writer is None:
            raise CodecError(
                f"unknown writer schema fingerprint {fingerprint_.hex()}: "
                "the message was written by a newer schema; upgrade the consumer"
            )
        if writer.fast is not None:
            try:
                return Decoded(writer.type, writer.fast(data, start))
            except Exception:  # noqa: S110 (fastavro below decides: it reads the bytes or says why not)
                # Malformed for the compiled reader (or written in a way only fastavro reads):
                # the same bytes fail, or load, exactly as they did before it existed.
                pass
        reader = self._readers[writer.type]
        try:
            record = fastavro.schemaless_reader(
                io.BytesIO(data[start:]),
                writer.parsed,
                None if writer.parsed is reader else reader,
            )
        except Exception as exc:  # fastavro raises assorted types on corrupt input
            raise CodecError(f"corrupt {writer.type.value} event: {exc!r}") from exc
        if not isinstance(record, dict):
            raise CodecError(f"{writer.type.value} event did not decode to a record")
        return Decoded(writer.type, record)

    def columns(self, wanted: Mapping[EventType, Sequence[str]]) -> ColumnDecoder:
        """A decoder that appends the ``wanted`` fields of events of those types to one list per
        field instead of returning a dict per event (see ``ColumnDecoder``)."""
        spec = tuple((event_type, tuple(fields)) for event_type, fields in wanted.items())
        binders = self._column_binders.get(spec)
        if binders is None:
            binders = self._column_binders[spec] = self._compile_columns(dict(spec))
        return ColumnDecoder(self, dict(spec), binders)

    def _compile_columns(
        self, wanted: Mapping[EventType, tuple[str, ...]]
    ) -> dict[bytes, tuple[EventType, ColumnBinder | None]]:
        for event_type, fields in wanted.items():
            known = {f["name"] for f in self._reader_schemas[event_type]["fields"]}
            unknown = [name for name in fields if name not in known]
            if unknown:
                raise ValueError(f"{event_type.value} events have no fields {unknown}")
        binders = {
            MAGIC + fingerprint_: (
                writer.type,
                compile_column_reader(
                    writer.schema, self._reader_schemas[writer.type], wanted[writer.type]
                ),
            )
            for fingerprint_, writer in self._writers.items()
            if writer.type in wanted
        }
        for schema_id, fingerprint_ in self._fingerprint_by_id.items():
            if (found := binders.get(MAGIC + fingerprint_)) is not None:
                binders[CONFLUENT_MAGIC + schema_id] = found
        return binders


_ColumnSpec = tuple[tuple[EventType, tuple[str, ...]], ...]


def _schema_id_bytes(schema_id: int) -> bytes:
    if not 0 <= schema_id < 2**32:
        raise ValueError(f"schema id {schema_id} does not fit the 4 bytes of Confluent framing")
    return schema_id.to_bytes(4, "big")


class ColumnDecoder:
    """Decodes events of chosen types straight into columns: ``columns[type][i]`` is the list
    of field ``fields[type][i]`` of every such event appended so far, in order.

    The values are exactly what ``Codec.decode`` would put in the event's dict (same writer
    schema resolution, same fastavro fallback) and an event that ``decode`` refuses is refused
    with the same ``CodecError``, leaving the columns as they were.
    """

    def __init__(
        self,
        codec: Codec,
        wanted: Mapping[EventType, tuple[str, ...]],
        binders: Mapping[bytes, tuple[EventType, ColumnBinder | None]],
    ) -> None:
        self._codec = codec
        self.fields = dict(wanted)
        self.columns: dict[EventType, list[list[Any]]] = {
            event_type: [[] for _ in fields] for event_type, fields in wanted.items()
        }
        # Keyed by the whole header (C3 01 + fingerprint, or 00 + schema id): one slice, one lookup.
        self._readers: dict[bytes, tuple[EventType, ColumnReader | None]] = {
            header: (event_type, None if bind is None else bind(self.columns[event_type]))
            for header, (event_type, bind) in binders.items()
        }

    def append(self, data: bytes) -> EventType | None:
        """Appends the event's fields and returns its type; None (nothing appended) when it is
        not of a wanted type, or not even an event: ``Codec.decode`` it. Raises ``CodecError``
        where ``decode`` does."""
        if data[:1] == CONFLUENT_MAGIC:
            found, start = self._readers.get(data[:_CONFLUENT_HEADER_SIZE]), _CONFLUENT_HEADER_SIZE
        else:
            found, start = self._readers.get(data[:_HEADER_SIZE]), _HEADER_SIZE
        if found is None:
            return None
        event_type, read = found
        if read is not None:
            try:
                read(data, start)
                return event_type
            except Exception:  # noqa: S110 (decode below decides, as in Codec.decode)
                pass
        record = self._codec.decode(data).record
        for column, name in zip(self.columns[event_type], self.fields[event_type], strict=True):
            column.append(record[name])
        return event_type
