"""The Datadog sink's state and offset arithmetic, with in-memory exporter and emitter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pytest

from consumers.datadog.llmobs import HandoverError
from consumers.datadog.sink import DatadogSink, parse_forwarded
from consumers.datadog.view import ExchangeView
from consumers.sink import Batch, Record, SinkError
from consumers.telemetry.metrics import Point
from schemas import Decoded, EventType

TOPIC = "t"


class Exporter:
    def __init__(self) -> None:
        self.submitted: list[ExchangeView] = []
        self.delivered: list[ExchangeView] = []
        self.fail = False

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def submit(self, view: ExchangeView, trace_headers: Mapping[str, str]) -> None:
        self.submitted.append(view)

    def flush(self) -> None:
        if self.fail:
            self.submitted.clear()
            raise HandoverError("agent down")
        self.delivered.extend(self.submitted)
        self.submitted.clear()


class Emitter:
    def __init__(self) -> None:
        self.points: list[Point] = []

    def emit(self, points: Iterable[Point]) -> None:
        self.points.extend(points)


def _record(offset: int, kind: EventType, **event: Any) -> Record:
    return Record(TOPIC, 0, offset, b"k", b"v", Decoded(kind, event))


def _request(offset: int, rid: str) -> Record:
    body = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    return _record(
        offset, EventType.REQUEST, request_id=rid, body=body, dialect="openai",
        endpoint="/v1/chat/completions", stream=False, provider="openai",
        received_at_us=1_700_000_000_000_000, model_requested="gpt-4o", model_sent="gpt-4o",
    )  # fmt: skip


def _chunk(offset: int, rid: str, text: str) -> Record:
    data = orjson.dumps({"choices": [{"message": {"content": text}}], "model": "gpt-4o"})
    return _record(offset, EventType.CHUNK, request_id=rid, seq=1, offset_ns=5, data=data)


def _completed(offset: int, rid: str) -> Record:
    return _record(
        offset, EventType.COMPLETED, request_id=rid, completed_at_us=1_700_000_000_100_000,
        status=200, outcome="ok", error_type=None, error_message=None, ttfb_ns=5,
        duration_ns=100_000_000, bytes_in=10, bytes_out=20, chunk_count=1,
    )  # fmt: skip


@pytest.fixture
def parts() -> tuple[DatadogSink, Exporter, Emitter]:
    exporter, emitter = Exporter(), Emitter()
    return DatadogSink(exporter=exporter, metrics=emitter), exporter, emitter


async def test_commit_holds_at_the_first_event_of_the_oldest_open_exchange(
    parts: tuple[DatadogSink, Exporter, Emitter],
) -> None:
    sink, exporter, _ = parts
    await sink.assigned({})
    batch = [_request(0, "a"), _request(1, "b"), _chunk(2, "a", "x"), _completed(3, "a")]
    result = await sink.write(Batch.of(batch))
    assert [v.request_id for v in exporter.delivered] == ["a"]
    assert exporter.delivered[0].output_text == "x"
    assert result.commit == {(TOPIC, 0): (1, "forwarded=4")}  # b is open from offset 1

    result = await sink.write(Batch.of([_chunk(4, "b", "y"), _completed(5, "b")]))
    assert result.commit == {(TOPIC, 0): (6, "forwarded=6")}


async def test_a_restart_rebuilds_open_exchanges_without_resending(
    parts: tuple[DatadogSink, Exporter, Emitter],
) -> None:
    sink, exporter, emitter = parts
    # What a restart re-reads from the held offset 1, with forwarded=4 in the commit metadata.
    await sink.assigned({(TOPIC, 0): (1, "forwarded=4")})
    replay = [_request(1, "b"), _chunk(2, "a", "x"), _completed(3, "a")]
    new = [_chunk(4, "b", "y"), _completed(5, "b")]
    result = await sink.write(Batch.of([*replay, *new]))
    assert [(v.request_id, v.output_text) for v in exporter.delivered] == [("b", "y")]
    assert sink.stats.skipped_already_forwarded == 1
    assert [p.value for p in emitter.points if p.name == "logorhythms.exchange.count"] == [1]
    assert result.commit == {(TOPIC, 0): (6, "forwarded=6")}


async def test_a_failed_hand_over_is_retriable_and_the_retry_sends_once(
    parts: tuple[DatadogSink, Exporter, Emitter],
) -> None:
    sink, exporter, emitter = parts
    await sink.assigned({})
    batch = Batch.of([_request(0, "a"), _chunk(1, "a", "x"), _completed(2, "a")])
    exporter.fail = True
    with pytest.raises(SinkError) as caught:
        await sink.write(batch)
    assert caught.value.retriable
    assert not [p for p in emitter.points if p.name == "logorhythms.exchange.count"]
    exporter.fail = False
    result = await sink.write(batch)  # the runner retries the same batch
    assert [v.request_id for v in exporter.delivered] == ["a"]
    assert [p.value for p in emitter.points if p.name == "logorhythms.exchange.count"] == [1]
    assert result.commit == {(TOPIC, 0): (3, "forwarded=3")}


async def test_an_exchange_that_never_completes_stops_holding_the_offset() -> None:
    exporter, emitter = Exporter(), Emitter()
    sink = DatadogSink(exporter=exporter, metrics=emitter, open_max_age_s=0.0)
    await sink.assigned({})
    result = await sink.write(Batch.of([_request(0, "lost"), _request(1, "b")]))
    assert result.commit == {(TOPIC, 0): (2, "forwarded=2")}
    assert sink.stats.abandoned == 2
    assert [p.name for p in emitter.points].count("logorhythms.datadog.abandoned") == 2


def test_forwarded_watermark_parsing() -> None:
    assert parse_forwarded("forwarded=42") == 42
    assert parse_forwarded("") is None
    assert parse_forwarded("forwarded=x") is None


async def test_spans_go_out_in_slices_and_a_taken_slice_is_not_resent() -> None:
    class FailSecondFlush(Exporter):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            self.fail = self.flushes == 2
            super().flush()

    exporter, emitter = FailSecondFlush(), Emitter()
    sink = DatadogSink(exporter=exporter, metrics=emitter, spans_per_flush=2)
    await sink.assigned({})
    records = [r for i, rid in enumerate("abc") for r in (_request(i * 2, rid),)]
    records += [_completed(10 + i, rid) for i, rid in enumerate("abc")]
    batch = Batch.of(records)
    with pytest.raises(SinkError):
        await sink.write(batch)  # slice [a, b] taken, slice [c] failed
    await sink.write(batch)
    assert [v.request_id for v in exporter.delivered] == ["a", "b", "c"]


async def test_large_content_gets_its_own_flush() -> None:
    exporter, emitter = Exporter(), Emitter()
    sink = DatadogSink(exporter=exporter, metrics=emitter, bytes_per_flush=3)
    await sink.assigned({})
    flushed: list[int] = []
    original = exporter.flush

    def counting_flush() -> None:
        flushed.append(len(exporter.submitted))
        original()

    exporter.flush = counting_flush  # type: ignore[method-assign]
    records = [_request(0, "a"), _chunk(1, "a", "long text"), _completed(2, "a")]
    records += [_request(3, "b"), _chunk(4, "b", "more text"), _completed(5, "b")]
    await sink.write(Batch.of(records))
    assert flushed == [1, 1]


async def test_an_empty_batch_still_holds_the_offset_of_open_exchanges(
    parts: tuple[DatadogSink, Exporter, Emitter],
) -> None:
    # The runner writes even a batch whose records were all undecodable (dead-lettered).
    sink, _, _ = parts
    await sink.assigned({})
    await sink.write(Batch.of([_request(0, "open")]))
    result = await sink.write(Batch.of([]))
    assert result.commit == {(TOPIC, 0): (0, "forwarded=1")}
