"""The ClickHouse sink: raw events first, then one assembled row per completed exchange.

Every insert carries a deduplication token derived from the batch's offsets, so retrying a batch
never doubles a row. A row ClickHouse refuses as data is isolated by bisection (deterministic
sub-batch tokens) and rejected alone; the rest of the batch is inserted.

Exchange assembly needs the request and every chunk of the exchange. They usually arrived in this
or a recent batch and are still in memory; otherwise (a restart mid-stream, a long stream) they
are read back from the raw tables, which always hold everything committed so far.

An exchange already present in `exchanges` is not loaded again. A redelivery with the same batch
boundaries is deduplicated by its token anyway, but one with different boundaries (a rebalance, a
replay of the topic from offset 0) would otherwise insert a second row: ReplacingMergeTree would
collapse it at merge time, but the per-minute rollup view would already have counted it twice.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from consumers.clickhouse.client import ClickHouse, ClickHouseError
from consumers.clickhouse.migrate import migrate
from consumers.clickhouse.rows import (
    CHUNK_COLUMNS,
    COMPLETED_COLUMNS,
    EXCHANGE_COLUMNS,
    REQUEST_COLUMNS,
    exchange_row,
    raw_columns,
)
from consumers.exchange.assemble import ChunkIn
from consumers.faultpoint import fault_point
from consumers.sink import Batch, EventColumns, Record, Rejected, SinkError, WriteResult
from schemas import EventType

log = logging.getLogger(__name__)

RAW_TABLES: dict[EventType, tuple[str, tuple[str, ...]]] = {
    EventType.REQUEST: ("requests_raw", REQUEST_COLUMNS),
    EventType.CHUNK: ("chunks_raw", CHUNK_COLUMNS),
    EventType.COMPLETED: ("completions_raw", COMPLETED_COLUMNS),
}
Columns = list[list[Any]]  # what every insert sends: one list per column, in column order
# Chunk events (most of the traffic) come from the runner as columns: every field is a column of
# chunks_raw as it is, followed by the Kafka position.
CHUNK_FIELDS = CHUNK_COLUMNS[:-2]
if CHUNK_COLUMNS[-2:] != ("kafka_partition", "kafka_offset"):
    raise RuntimeError("chunks_raw must end with the Kafka position (see CHUNK_FIELDS)")

_REQUEST_FIELDS = REQUEST_COLUMNS[:-2]  # without the Kafka position
_READ_BACK_REQUESTS = (
    "SELECT " + ", ".join(_REQUEST_FIELDS) + " FROM requests_raw FINAL "  # noqa: S608 (constant columns)
    "WHERE request_id IN {ids:Array(String)}"
)
_LOADED = "SELECT DISTINCT request_id FROM exchanges WHERE request_id IN {ids:Array(String)}"
_READ_BACK_CHUNKS = (
    "SELECT request_id, seq, offset_ns, data, delivered FROM chunks_raw FINAL "
    "WHERE request_id IN {ids:Array(String)} ORDER BY request_id, seq"
)


@dataclass(slots=True)
class _Open:
    """What we hold in memory of an exchange whose completed event has not arrived yet."""

    request: dict[str, Any] | None = None
    chunks: dict[int, ChunkIn] = field(default_factory=dict)
    bytes: int = 0


@dataclass(slots=True)
class SinkStats:
    inserted_rows: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    readbacks: int = 0
    already_loaded: int = 0
    rejected: int = 0
    last_insert_ms: float = 0.0


class ClickHouseSink:
    name = "clickhouse"
    columnar = MappingProxyType({EventType.CHUNK: CHUNK_FIELDS})

    def __init__(self, clickhouse: ClickHouse, *, max_open_bytes: int = 256 * 1024 * 1024) -> None:
        self.clickhouse = clickhouse
        self.stats = SinkStats()
        self._open: collections.OrderedDict[str, _Open] = collections.OrderedDict()
        self._open_bytes = 0
        self._max_open_bytes = max_open_bytes

    async def start(self) -> None:
        await self.clickhouse.start()
        try:
            await migrate(self.clickhouse)
        except ClickHouseError as exc:
            raise SinkError(f"cannot migrate the ClickHouse schema: {exc}") from exc

    async def stop(self) -> None:
        await self.clickhouse.stop()

    async def write(self, batch: Batch) -> WriteResult:
        result = WriteResult()
        by_type: dict[EventType, list[Record]] = collections.defaultdict(list)
        for record in batch.records:
            by_type[record.event.type].append(record)
        chunks = self._chunks(batch, by_type.pop(EventType.CHUNK, []))
        for event_type, (table, columns) in RAW_TABLES.items():
            records: Sequence[Record]
            if event_type is EventType.CHUNK:
                records, data = chunks.records(), self.chunk_columns(chunks)
            else:
                records = by_type.get(event_type, [])
                data = self.raw_columns(columns, records)
            result.rejected += await self._insert(
                table, columns, data, records, f"{batch.token}:{table}"
            )
        await fault_point("mid_insert")
        rejected_ids = {r.record.event.record["request_id"] for r in result.rejected}
        self._remember(by_type.get(EventType.REQUEST, []), chunks)
        completed = [
            r for r in by_type.get(EventType.COMPLETED, [])
            if r.event.record["request_id"] not in rejected_ids
        ]  # fmt: skip
        completed = await self._not_yet_loaded(completed)
        if completed:
            rows = self.exchange_columns(await self._exchange_rows(completed))
            # Which exchanges are skipped can differ between two attempts at the same batch, so
            # the token names the exact set: the same rows always get the same token, and a
            # different set never inherits a token (or bisection sub-tokens) of another.
            ids = "\n".join(sorted(r.event.record["request_id"] for r in completed))
            digest = hashlib.sha256(ids.encode()).hexdigest()[:16]
            result.rejected += await self._insert(
                "exchanges", EXCHANGE_COLUMNS, rows, completed, f"{batch.token}:exchanges:{digest}"
            )
        self.stats.rejected += len(result.rejected)
        return result

    # The two CPU-heavy steps of a batch are methods so the benchmark can time them.
    @staticmethod
    def raw_columns(columns: Sequence[str], records: Sequence[Record]) -> Columns:
        return raw_columns(
            columns,
            [r.event.record for r in records],
            [r.partition for r in records],
            [r.offset for r in records],
        )

    @staticmethod
    def chunk_columns(chunks: EventColumns) -> Columns:
        origins = chunks.origins
        return [*chunks.values, [o.partition for o in origins], [o.offset for o in origins]]

    @staticmethod
    def _chunks(batch: Batch, records: Sequence[Record]) -> EventColumns:
        """Every chunk event of the batch as columns: from the runner, or given as Records (a
        caller other than the runner), or both."""
        given = EventColumns.of(EventType.CHUNK, CHUNK_FIELDS, records)
        columns = batch.columns.get(EventType.CHUNK)
        if columns is None:
            return given
        if columns.fields != CHUNK_FIELDS:
            raise ValueError(f"chunk columns must be {CHUNK_FIELDS}, not {columns.fields}")
        return columns + given if records else columns

    @staticmethod
    def exchange_columns(rows: Sequence[tuple[Any, ...]]) -> Columns:
        return [list(column) for column in zip(*rows, strict=True)]

    async def _insert(
        self,
        table: str,
        columns: Sequence[str],
        data: Columns,
        records: Sequence[Record],
        token: str,
    ) -> list[Rejected]:
        """Insert one row per record (``data`` column-oriented); bisect a refused batch."""
        if not records:
            return []
        try:
            await self.clickhouse.insert(
                table, data, columns, dedup_token=token, column_oriented=True
            )
        except ClickHouseError as exc:
            if exc.retriable:
                raise SinkError(str(exc)) from exc
            if len(records) == 1:
                log.error("ClickHouse rejected a %s row: %s", table, exc)
                return [Rejected(records[0], f"{table}: {exc}")]
            middle = len(records) // 2
            low = [column[:middle] for column in data]
            high = [column[middle:] for column in data]
            return [
                *await self._insert(table, columns, low, records[:middle], token + ".0"),
                *await self._insert(table, columns, high, records[middle:], token + ".1"),
            ]
        self.stats.inserted_rows[table] += len(records)
        return []

    def _remember(self, requests: list[Record], chunks: EventColumns) -> None:
        # get() before creating: setdefault(id, _Open()) would build an _Open per event.
        open_ = self._open
        for r in requests:
            event = r.event.record
            entry = open_.get(event["request_id"])
            if entry is None:
                entry = open_[event["request_id"]] = _Open()
            entry.request = event
            entry.bytes += len(event["body"])
            self._open_bytes += len(event["body"])
        names = ("request_id", "seq", "offset_ns", "data", "delivered")
        columns = (chunks.column(name) for name in names)
        added = 0
        for request_id, seq, offset_ns, data, delivered in zip(*columns, strict=True):
            entry = open_.get(request_id)
            if entry is None:
                entry = open_[request_id] = _Open()
            entry.chunks[seq] = ChunkIn(seq, offset_ns, data, delivered)
            entry.bytes += len(data)
            added += len(data)
        self._open_bytes += added
        # Oldest first: an exchange evicted here is read back from ClickHouse when it completes.
        while self._open_bytes > self._max_open_bytes and self._open:
            _, evicted = self._open.popitem(last=False)
            self._open_bytes -= evicted.bytes

    def _take(self, request_id: str) -> _Open | None:
        entry = self._open.pop(request_id, None)
        if entry is not None:
            self._open_bytes -= entry.bytes
        return entry

    async def _not_yet_loaded(self, completed: list[Record]) -> list[Record]:
        """The completed events whose exchange row is not in ClickHouse yet (see the module doc)."""
        # A producer that re-published (e.g. replaying its journal) can put one exchange's
        # completed event twice into the same batch: assemble it once.
        completed = list({r.event.record["request_id"]: r for r in reversed(completed)}.values())
        completed.reverse()
        if not completed:
            return []
        ids = [r.event.record["request_id"] for r in completed]
        try:
            loaded = {row[0] for row in await self.clickhouse.rows(_LOADED, {"ids": ids})}
        except ClickHouseError as exc:
            raise SinkError(f"cannot check which exchanges are already loaded: {exc}") from exc
        if not loaded:
            return completed
        self.stats.already_loaded += len(loaded)
        for request_id in loaded:
            self._take(request_id)  # a redelivered stream's parts are not needed again
        return [r for r in completed if r.event.record["request_id"] not in loaded]

    async def _exchange_rows(self, completed: list[Record]) -> list[tuple[Any, ...]]:
        parts: dict[str, tuple[dict[str, Any] | None, list[ChunkIn]]] = {}
        missing: list[str] = []
        for record in completed:
            event = record.event.record
            request_id = event["request_id"]
            entry = self._take(request_id) or _Open()
            expected = event["chunk_count"]
            have_all = entry.request is not None and all(
                seq in entry.chunks for seq in range(1, expected + 1)
            )
            if have_all:
                chunks = [entry.chunks[seq] for seq in range(1, expected + 1)]
                parts[request_id] = (entry.request, chunks)
            else:
                missing.append(request_id)
        if missing:
            parts.update(await self._read_back(missing))
        rows = []
        for record in completed:
            event = record.event.record
            request, chunks = parts.get(event["request_id"], (None, []))
            rows.append(exchange_row(request, chunks, event))
        return rows

    async def _read_back(
        self, request_ids: list[str]
    ) -> dict[str, tuple[dict[str, Any] | None, list[ChunkIn]]]:
        self.stats.readbacks += len(request_ids)
        try:
            requests = await self.clickhouse.rows(
                _READ_BACK_REQUESTS, {"ids": request_ids}, binary_columns=("body",)
            )
            chunk_rows = await self.clickhouse.rows(
                _READ_BACK_CHUNKS, {"ids": request_ids}, binary_columns=("data",)
            )
        except ClickHouseError as exc:
            raise SinkError(f"cannot read back exchanges to assemble: {exc}") from exc
        out: dict[str, tuple[dict[str, Any] | None, list[ChunkIn]]] = {
            rid: (None, []) for rid in request_ids
        }
        for row in requests:
            record = dict(zip(_REQUEST_FIELDS, row, strict=True))
            record["received_at_us"] = record.pop("received_at")
            record["headers"] = [{"name": n, "value": v} for n, v in record["headers"]]
            out[record["request_id"]] = (record, out[record["request_id"]][1])
        for request_id, seq, offset_ns, data, delivered in chunk_rows:
            out[request_id][1].append(ChunkIn(seq, offset_ns, data, bool(delivered)))
        return out
