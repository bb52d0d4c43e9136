"""What a sink is: it takes a batch and either delivers it, or says which records it rejects, or
raises a retriable error. The runner turns that into exactly one outcome per batch: delivered
(commit), retry (pause, back off, same batch again) or rejected (dead-letter, then commit).

A sink that only copies some events' fields into columns (the ClickHouse sink and its chunk
events, most of the traffic) may ask for them as columns (``ColumnarSink``): the runner then
decodes those straight into one list per field, without a dict and a ``Record`` per event.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, overload

from schemas import Decoded, EventType


class SinkError(Exception):
    """A sink could not take the batch. ``retriable`` says whether the same batch may succeed."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class Record(NamedTuple):
    """One decoded Kafka record. A NamedTuple rather than a frozen dataclass: just as immutable,
    and cheaper to build, which counts once per event at tens of thousands a second."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event: Decoded
    headers: tuple[tuple[str, bytes], ...] = ()  # Kafka headers (trace context)


class Origin(Protocol):
    """Where an event came from: a Kafka record as fetched (or a ``Record``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class EventColumns:
    """Events of one type as columns: event ``i`` has ``values[j][i]`` in field ``fields[j]``
    and came from ``origins[i]``. The lists are never changed once in a batch (a retry sends
    the same batch again)."""

    type: EventType
    fields: tuple[str, ...]
    values: Sequence[list[Any]]
    origins: Sequence[Origin]

    @staticmethod
    def of(
        event_type: EventType, fields: tuple[str, ...], records: Sequence[Record]
    ) -> EventColumns:
        """The same events, given as ``Record``s."""
        events = [r.event.record for r in records]
        return EventColumns(event_type, fields, [[e[f] for e in events] for f in fields], records)

    def __len__(self) -> int:
        return len(self.origins)

    def __add__(self, other: EventColumns) -> EventColumns:
        if (other.type, other.fields) != (self.type, self.fields):
            raise ValueError("only columns of the same fields of the same events add up")
        return EventColumns(
            self.type,
            self.fields,
            [a + b for a, b in zip(self.values, other.values, strict=True)],
            [*self.origins, *other.origins],
        )

    def column(self, name: str) -> list[Any]:
        return self.values[self.fields.index(name)]

    def records(self) -> Sequence[Record]:
        """Each event as a ``Record`` (see ``record``), built only when asked for: a sink needs
        them for the few events it rejects."""
        return _ColumnRecords(self, range(len(self)))

    def record(self, index: int) -> Record:
        """Event ``index`` as a ``Record`` whose event holds the fields of these columns."""
        origin = self.origins[index]
        event = {name: column[index] for name, column in zip(self.fields, self.values, strict=True)}
        return Record(
            origin.topic, origin.partition, origin.offset, origin.key, origin.value or b"",
            Decoded(self.type, event), tuple(origin.headers or ()),
        )  # fmt: skip


class _ColumnRecords(Sequence[Record]):
    def __init__(self, columns: EventColumns, rows: range) -> None:
        self._columns = columns
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        if isinstance(index, slice):
            return _ColumnRecords(self._columns, self._rows[index])
        return self._columns.record(self._rows[index])


@dataclass(frozen=True, slots=True)
class Rejected:
    record: Record
    reason: str


@dataclass(frozen=True, slots=True)
class Batch:
    records: Sequence[Record]
    token: str  # deterministic from the offsets it covers, so a retry deduplicates
    # The events a ColumnarSink asked for as columns; they are not in ``records``.
    columns: Mapping[EventType, EventColumns] = field(default_factory=dict)

    def every_record(self) -> Iterable[Record]:
        """Every event of the batch as a ``Record``, those in ``columns`` included, each
        partition's in offset order (as fetched)."""
        if not self.columns:
            return self.records
        every = itertools.chain(self.records, *(c.records() for c in self.columns.values()))
        return sorted(every, key=operator.attrgetter("topic", "partition", "offset"))

    def size(self) -> int:
        return len(self.records) + sum(len(c) for c in self.columns.values())

    @staticmethod
    def of(
        records: Sequence[Record], columns: Mapping[EventType, EventColumns] | None = None
    ) -> Batch:
        columns = columns or {}
        # One lookup and at most one comparison per record, no tuples built (50 000 a batch).
        ranges: dict[tuple[str, int], list[int]] = {}
        for r in itertools.chain(records, *(c.origins for c in columns.values())):
            offset = r.offset
            span = ranges.get((r.topic, r.partition))
            if span is None:
                ranges[(r.topic, r.partition)] = [offset, offset]
            elif offset > span[1]:
                span[1] = offset
            elif offset < span[0]:
                span[0] = offset
        spec = ";".join(f"{t}/{p}:{lo}-{hi}" for (t, p), (lo, hi) in sorted(ranges.items()))
        return Batch(records, hashlib.sha256(spec.encode()).hexdigest()[:32], columns)


Committed = tuple[int, str]  # (next offset to read, commit metadata)


@dataclass(slots=True)
class WriteResult:
    rejected: list[Rejected] = field(default_factory=list)
    # Per (topic, partition): commit this instead of "everything in the batch". A sink that holds
    # state across batches commits less, so a restart re-reads what the state was built from.
    commit: dict[tuple[str, int], Committed] = field(default_factory=dict)


class Sink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def write(self, batch: Batch) -> WriteResult:
        """Deliver the batch, rejecting records that can never be delivered; raise SinkError
        (retriable) when the whole batch should be tried again later."""
        ...


class ColumnarSink(Sink, Protocol):
    """A sink that takes the events of some types as columns (``Batch.columns``), with just
    the fields it names here; every other event still comes as a ``Record``."""

    columnar: Mapping[EventType, tuple[str, ...]]


class StatefulSink(Sink, Protocol):
    """A sink that keeps state across batches (see ``WriteResult.commit``). On every assignment
    it is told what is committed for its partitions, metadata included, and must drop any state
    it holds for them: the consumer re-reads them from the committed offset."""

    async def assigned(self, committed: dict[tuple[str, int], Committed]) -> None: ...
