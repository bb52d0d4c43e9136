"""The Datadog sink: one LLM Observability span and a set of metric points per finished exchange.

Exchanges are assembled in memory (request + chunks, until the completed event). That state is
not stored anywhere else, so the sink never lets Kafka forget it: per partition it commits the
offset of the first event of the oldest exchange still open, so a restart re-reads exactly what
the open exchanges were built from. The commit's metadata carries ``forwarded=<offset>``: every
completed event before that offset was already handed over, so the re-read rebuilds state from
those records without sending their exchanges a second time.

Offsets follow what Datadog actually took: spans are handed to the agent and the hand-over is
checked (``LLMObsExporter.flush``) before ``write`` returns; a failed hand-over is a retriable
error, so nothing is committed and the runner retries. Metric points go out only after the spans
of their exchange were handed over, so a retry never counts an exchange twice.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from consumers.datadog.llmobs import HandoverError
from consumers.datadog.metrics import ErrorTypes, exchange_points, point
from consumers.datadog.view import ExchangeView, exchange_view
from consumers.exchange.assemble import ChunkIn
from consumers.sink import Batch, Committed, Record, Rejected, SinkError, WriteResult
from consumers.telemetry.metrics import Point
from consumers.telemetry.tracing import trace_headers
from schemas import EventType

log = logging.getLogger(__name__)

_FORWARDED = "forwarded="
TopicPartition = tuple[str, int]


class SpanExporter(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def submit(self, view: ExchangeView, trace_headers: Mapping[str, str]) -> None: ...

    def flush(self) -> None: ...


class MetricsEmitter(Protocol):
    def emit(self, points: Iterable[Point]) -> None: ...


@dataclass(slots=True)
class _Open:
    """An exchange whose completed event has not arrived yet."""

    tp: TopicPartition
    first_offset: int
    opened_at: float  # monotonic
    request: dict[str, Any] | None = None
    chunks: dict[int, ChunkIn] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    bytes: int = 0


@dataclass(slots=True)
class _Ready:
    record: Record
    view: ExchangeView
    headers: dict[str, str]


@dataclass(slots=True)
class DatadogSinkStats:
    forwarded: int = 0
    skipped_already_forwarded: int = 0
    abandoned: int = 0
    handover_failures: int = 0


def parse_forwarded(metadata: str) -> int | None:
    """The ``forwarded=<offset>`` watermark of a commit's metadata, if it has one."""
    if metadata.startswith(_FORWARDED) and metadata[len(_FORWARDED) :].isdigit():
        return int(metadata[len(_FORWARDED) :])
    return None


class DatadogSink:
    name = "datadog"

    def __init__(
        self,
        *,
        exporter: SpanExporter,
        metrics: MetricsEmitter,
        open_max_age_s: float = 900.0,
        max_open_bytes: int = 256 * 1024 * 1024,
        spans_per_flush: int = 200,
        bytes_per_flush: int = 4 * 1024 * 1024,
    ) -> None:
        self._exporter = exporter
        self._metrics = metrics
        self._open_max_age_s = open_max_age_s
        self._max_open_bytes = max_open_bytes
        self._spans_per_flush = spans_per_flush
        self._bytes_per_flush = bytes_per_flush
        self._error_types = ErrorTypes()
        self._open: collections.OrderedDict[str, _Open] = collections.OrderedDict()
        self._open_bytes = 0
        self._applied: dict[TopicPartition, int] = {}  # next offset not yet applied to the state
        self._forwarded: dict[TopicPartition, int] = {}  # completed events below are handed over
        self._ready: list[_Ready] = []
        self._rejected: list[Rejected] = []  # kept until the batch succeeds, for its retries
        self._agent_down = False
        self.stats = DatadogSinkStats()

    async def start(self) -> None:
        await asyncio.to_thread(self._exporter.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self._exporter.stop)

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        # The consumer restarts every assigned partition from its committed offset: start over.
        self._open.clear()
        self._open_bytes = 0
        self._applied.clear()
        self._ready.clear()
        self._rejected.clear()
        self._forwarded = {
            tp: forwarded
            for tp, (_, metadata) in committed.items()
            if (forwarded := parse_forwarded(metadata)) is not None
        }

    async def write(self, batch: Batch) -> WriteResult:
        for record in batch.records:
            rejected = self._apply(record)
            if rejected is not None:
                self._rejected.append(rejected)
        self._abandon_stale()
        await self._hand_over()
        result = WriteResult(rejected=self._rejected)
        self._rejected = []
        self._metrics.emit([point("logorhythms.datadog.open_exchanges", len(self._open))])
        for tp, applied in self._applied.items():
            self._forwarded[tp] = applied
            held = min((e.first_offset for e in self._open.values() if e.tp == tp), default=None)
            result.commit[tp] = (applied if held is None else held, f"{_FORWARDED}{applied}")
        return result

    def _apply(self, record: Record) -> Rejected | None:
        """Fold one record into the state (once: a retried batch skips what is applied)."""
        tp = (record.topic, record.partition)
        if record.offset < self._applied.get(tp, -1):
            return None
        self._applied[tp] = record.offset + 1
        event = record.event.record
        request_id: str = event["request_id"]
        if record.event.type is EventType.COMPLETED:
            entry = self._take(request_id)
            if record.offset < self._forwarded.get(tp, -1):
                self.stats.skipped_already_forwarded += 1
                return None
            headers = trace_headers(record.headers) or (entry.headers if entry else {})
            try:
                chunks = [entry.chunks[s] for s in sorted(entry.chunks)] if entry else []
                view = exchange_view(entry.request if entry else None, chunks, event)
            except Exception as exc:  # a bug in assembly must not stop the pipeline
                log.exception("cannot build the Datadog view of exchange %s", request_id)
                return Rejected(record, f"datadog: cannot build the exchange view: {exc!r}")
            self._ready.append(_Ready(record, view, headers))
            return None
        entry = self._open.get(request_id)
        if entry is None:
            entry = _Open(tp=tp, first_offset=record.offset, opened_at=time.monotonic())
            self._open[request_id] = entry
        size = 0
        if record.event.type is EventType.REQUEST:
            entry.request = event
            entry.headers = trace_headers(record.headers)
            size = len(event["body"])
        else:
            entry.chunks[event["seq"]] = ChunkIn(event["seq"], event["offset_ns"], event["data"])
            size = len(event["data"])
        entry.bytes += size
        self._open_bytes += size
        return None

    def _take(self, request_id: str) -> _Open | None:
        entry = self._open.pop(request_id, None)
        if entry is not None:
            self._open_bytes -= entry.bytes
        return entry

    def _abandon_stale(self) -> None:
        """Give up on exchanges whose completed event never came (a proxy crash), and on the
        oldest when memory runs over: otherwise they would hold the committed offset forever.
        If the completed event does come later, the exchange is still forwarded, without content.
        """
        now = time.monotonic()
        while self._open:
            request_id, oldest = next(iter(self._open.items()))
            too_old = now - oldest.opened_at > self._open_max_age_s
            if not too_old and self._open_bytes <= self._max_open_bytes:
                return
            self._take(request_id)
            self.stats.abandoned += 1
            self._metrics.emit([point("logorhythms.datadog.abandoned", 1)])
            log.warning("gave up waiting for the end of exchange %s", request_id)

    def _next_slice(self) -> list[_Ready]:
        """The next spans to flush together: at most ``spans_per_flush`` and about
        ``bytes_per_flush`` of content, so one flush never overflows ddtrace's trace buffer."""
        size = 0
        for count, ready in enumerate(self._ready[: self._spans_per_flush]):
            size += len(ready.view.output_text) + sum(len(t) for _, t in ready.view.input_messages)
            if size > self._bytes_per_flush and count > 0:
                return self._ready[:count]
        return self._ready[: self._spans_per_flush]

    async def _hand_over(self) -> None:
        """Submit and flush the ready exchanges in slices; each slice that the agent took is
        removed (and its metrics sent), so a retry after a failure resends only the rest."""
        while self._ready:
            part = self._next_slice()
            for ready in part:
                self._exporter.submit(ready.view, ready.headers)
            try:
                await asyncio.to_thread(self._exporter.flush)
            except HandoverError as exc:
                self.stats.handover_failures += 1
                if not self._agent_down:
                    self._agent_down = True
                    log.warning(
                        "Datadog is not taking spans (%s); holding Kafka offsets and retrying "
                        "until it does (said once per outage)",
                        exc,
                    )
                raise SinkError(str(exc), retriable=True) from exc
            if self._agent_down:
                self._agent_down = False
                log.info("Datadog takes spans again; forwarding resumed")
            del self._ready[: len(part)]
            self.stats.forwarded += len(part)
            self._metrics.emit(
                p for ready in part for p in exchange_points(ready.view, self._error_types)
            )
