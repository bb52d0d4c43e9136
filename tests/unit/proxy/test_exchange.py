"""proxy.exchange keeps an exchange's events in order: the request event first, each exactly once,
the completed event last, whatever step ends the exchange. Read back from a real journal."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy import capture, redaction
from proxy.exchange import LARGE_BODY, EventRecorder, Exchange, RequestEvent
from proxy.journal import Journal
from proxy.publisher import Publisher
from schemas import Codec, EventType

KEY = b"unit-fingerprint-key"
CLIENT_SECRET = "sk-client-secret-0123456789"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(tmp_path / "journal")
    journal.open()
    yield journal
    journal.close()


def recorder_for(journal: Journal) -> EventRecorder:
    # Never started: publish() appends to the journal and queues in memory, no Kafka involved.
    publisher = Publisher(bootstrap_servers="127.0.0.1:1", topic="t", journal=journal)
    fingerprinter = redaction.Fingerprinter(KEY)
    return EventRecorder(
        codec=Codec(), publisher=publisher, fingerprinter=fingerprinter, max_event_bytes=1 << 20
    )


def new_exchange(recorder: EventRecorder, body: bytes = b'{"model":"m"}') -> Exchange:
    redactor = recorder.fingerprinter.redactor(
        [("authorization", f"Bearer {CLIENT_SECRET}")], "", ()
    )
    exchange = Exchange(recorder, redactor, "openai")
    exchange.body = body
    exchange.capture_request(
        capture.CapturedRequest(
            request_id=exchange.id, received_at_us=exchange.received_at_us, method="POST",
            path="/v1/chat/completions", query="", headers=[], peer_ip="127.0.0.1",
            forwarded_for=None, client_ip="127.0.0.1", client_key_fingerprint=None, body=body,
            max_body_in_event=1 << 20, model_requested="m", stream=False,
            endpoint="/v1/chat/completions", dialect="openai", provider="openai",
            upstream_url="http://u/v1/chat/completions", model_sent="m", proxy_instance="test",
        )
    )  # fmt: skip
    return exchange


def events(journal: Journal) -> list[tuple[EventType, dict[str, Any]]]:
    codec = Codec()
    return [tuple(codec.decode(record.value)) for _, record in journal.read(100)]  # type: ignore[misc]


def test_finish_before_any_step_still_puts_the_request_event_first(journal: Journal) -> None:
    exchange = new_exchange(recorder_for(journal))
    exchange.outcome.fail("upstream_timeout", "first_byte_timeout", "the upstream did not answer")
    exchange.finish(None)
    exchange.finish(None)  # a second call (the handler's finally) adds nothing
    got = events(journal)
    assert [t for t, _ in got] == [EventType.REQUEST, EventType.COMPLETED]
    assert {r["request_id"] for _, r in got} == {exchange.id}
    assert got[1][1]["outcome"] == "upstream_timeout"
    assert got[1][1]["error_type"] == "first_byte_timeout"


def test_chunks_follow_the_request_event_and_the_completed_event_counts_them(
    journal: Journal,
) -> None:
    exchange = new_exchange(recorder_for(journal))
    request_event = exchange.request_event
    assert request_event is not None
    request_event.emit()
    request_event.emit()  # emitted exactly once
    for data in (b"data: one\n\n", f"data: echo {CLIENT_SECRET}\n\n".encode()):
        exchange.outcome.chunks += 1
        exchange.outcome.bytes_out += len(data)
        exchange.chunk(exchange.since_start_ns(), data, delivered=True)
    response = web.Response(status=200, headers={"set-cookie": "session=abcdef0123456789"})
    exchange.finish(response)
    got = events(journal)
    assert [t for t, _ in got] == [
        EventType.REQUEST,
        EventType.CHUNK,
        EventType.CHUNK,
        EventType.COMPLETED,
    ]
    assert [r["seq"] for t, r in got if t is EventType.CHUNK] == [1, 2]
    assert CLIENT_SECRET.encode() not in got[2][1]["data"]  # an echoed key is fingerprinted
    completed = got[3][1]
    assert completed["status"] == 200  # taken from a response aiohttp sends after the handler
    assert completed["chunk_count"] == 2
    assert completed["bytes_in"] == len(exchange.body)
    stored = {h["name"]: h["value"] for h in completed["response_headers"]}
    assert stored["set-cookie"].startswith(redaction.FINGERPRINT_PREFIX)


def test_an_error_answer_names_the_exchange_in_the_dialects_shape(journal: Journal) -> None:
    exchange = Exchange(
        recorder_for(journal), redaction.Fingerprinter(KEY).redactor([], "", ()), "anthropic"
    )
    response = exchange.error(404, "not_found_error", "no such model")
    assert response.status == 404
    assert response.headers["x-logorhythms-request-id"] == exchange.id
    assert (
        response.body
        == b'{"type":"error","error":{"type":"not_found_error","message":"no such model"}}'
    )


def test_an_exchange_is_freed_by_reference_counting_alone(journal: Journal) -> None:
    """The cyclic collector is tuned to run rarely (proxy.app.tune_gc_for_serving): an exchange
    and its request event must not form a reference cycle."""
    recorder = recorder_for(journal)
    exchange = new_exchange(recorder)
    assert exchange.request_event is not None
    exchange.request_event.emit()
    exchange.finish(None)
    gc.collect()
    # Whatever the collector finds now is kept for inspection: none of it may be an exchange or
    # its request event (other garbage, from caches built on first use, is not this test's).
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        del exchange
        gc.collect()
        leaked = [o for o in gc.garbage if isinstance(o, Exchange | RequestEvent)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert leaked == []


def test_every_event_names_its_type_and_schema_in_kafka_headers(journal: Journal) -> None:
    """Without tracing, every record still carries logorhythms.event and logorhythms.schema, and
    the schema header is the fingerprint in the value's single-object header (docs/EVENTS.md)."""
    exchange = new_exchange(recorder_for(journal))
    exchange.trace = [("traceparent", b"00-abc")]  # tracing on: the context rides along
    exchange.request_event.emit()  # type: ignore[union-attr]
    exchange.chunk(1, b"data: {}\n\n", delivered=True)
    exchange.finish(None)
    records = [record for _, record in journal.read(100)]
    assert len(records) == 3
    for record, event_type in zip(
        records, [EventType.REQUEST, EventType.CHUNK, EventType.COMPLETED], strict=True
    ):
        named = dict(record.headers or [])
        assert named["logorhythms.event"] == event_type.value.encode()
        assert bytes.fromhex(named["logorhythms.schema"].decode()) == record.value[2:10]
        assert Codec().decode(record.value).type is event_type
    assert "traceparent" not in dict(records[1].headers or [])
    assert dict(records[2].headers or [])["traceparent"] == b"00-abc"


async def test_a_large_body_is_redacted_off_the_event_loop_and_what_it_finds_is_kept(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the event loop, redacting a 30 MB body holds every other exchange for 0.2 s of CPU,
    seconds on a busy host: enough to time out their upstream connects (docs/PERFORMANCE.md,
    "Large uploads"). It runs in a worker thread; the secret it finds by its member name is
    then known to the exchange, so an upstream echoing it in a chunk is caught too."""
    secret = b"hunter2-correct-horse-battery"  # no key shape: found by the name "password"
    body = b'{"model":"m","password":"' + secret + b'","pad":"' + b"x" * LARGE_BODY + b'"}'
    exchange = new_exchange(recorder_for(journal), body)
    threads: list[int] = []
    body_redaction = redaction.Redactor.body

    def watched(self: redaction.Redactor, data: bytes) -> bytes:
        threads.append(threading.get_ident())
        return body_redaction(self, data)

    monkeypatch.setattr(redaction.Redactor, "body", watched)
    request_event = exchange.request_event
    assert request_event is not None
    request_event.start()
    await request_event.finished()
    assert threads, "the body was not redacted"
    assert threading.get_ident() not in threads, "a large body was redacted on the event loop"
    exchange.outcome.chunks = 1
    exchange.chunk(1_000, b'{"echo":"' + secret + b'"}', delivered=True)
    exchange.finish(None)
    got = events(journal)
    assert [t for t, _ in got] == [EventType.REQUEST, EventType.CHUNK, EventType.COMPLETED]
    stored_body, stored_chunk = got[0][1]["body"], got[1][1]["data"]
    assert len(stored_body) > LARGE_BODY
    assert secret not in stored_body
    assert secret not in stored_chunk
    assert b"fp:" in stored_chunk
