"""One exchange as the proxy records it: its id and key, how it is going, and its events in order.

The request event is always the exchange's first event and the completed event its last, each
exactly once; ``Exchange`` keeps that order whatever path the serving takes (proxy/forward.py
decides the answer, proxy/relay.py streams the upstream's). ``EventRecorder`` is the process-wide
step from an event's record to the publisher: encode, publish, and hand to the kernel.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from proxy import capture, redaction, telemetry
from proxy.errors import error_body
from proxy.publisher import Publisher
from schemas import Codec, EventType

log = logging.getLogger(__name__)

# Names the exchange in every response, so a client can quote it.
REQUEST_ID_HEADER = "x-logorhythms-request-id"
# Bodies above this are sent upstream as a file-like object and redacted and hashed in a worker
# thread.
LARGE_BODY = 64 * 1024


class EventRecorder:
    """Encodes events and hands them to the publisher, which never blocks."""

    __slots__ = (
        "_codec",
        "_enabled",
        "_event_headers",
        "_publisher",
        "fingerprinter",
        "max_event_payload",
    )

    def __init__(
        self,
        *,
        codec: Codec,
        publisher: Publisher,
        fingerprinter: redaction.Fingerprinter,
        max_event_bytes: int,
        enabled: bool = True,
    ) -> None:
        self._codec = codec
        self._publisher = publisher
        self._enabled = enabled  # off for benchmarks only: price the capture by switching it off
        # Every record names its event type and schema (docs/EVENTS.md). One list per type,
        # shared by all its records: nothing downstream (journal, aiokafka) mutates headers.
        self._event_headers = {t: codec.event_headers(t) for t in EventType}
        self.fingerprinter = fingerprinter
        self.max_event_payload = max_event_bytes - 4096  # room for the other fields

    def emit(
        self,
        event_type: EventType,
        key: bytes,
        record: dict[str, Any],
        headers: telemetry.Headers | None = None,
    ) -> None:
        if not self._enabled:
            return
        try:
            value = self._codec.encode(event_type, record)
        except Exception:  # a capture bug must never break the client's response
            log.exception("could not encode a %s event; it is lost", event_type.value)
            self._publisher.record_drop(key, "encode_error")
            return
        named = self._event_headers[event_type]
        self._publisher.publish(key, value, named if headers is None else named + headers)

    def write_through(self) -> None:
        """Hand every event published so far to the kernel (``Publisher.write_through``)."""
        self._publisher.write_through()


@dataclass(slots=True)
class Outcome:
    """How the exchange is going; becomes the completed event."""

    status: int = 0
    outcome: str = "ok"
    error_type: str | None = None
    error_message: str | None = None
    upstream_status: int = 0
    ttfb_ns: int | None = None
    bytes_out: int = 0
    chunks: int = 0
    finished: bool = False  # the completed event is out

    def fail(self, outcome: str, error_type: str, message: str) -> None:
        self.outcome, self.error_type, self.error_message = outcome, error_type, message


_LARGE_BODY_WORKER: concurrent.futures.ThreadPoolExecutor | None = None


def _large_bodies() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread that redacts large bodies. One, not a pool: the regular expressions hold
    the GIL, so each more thread takes a further share of it from the event loop and adds no
    throughput; bodies queue here instead."""
    global _LARGE_BODY_WORKER  # one per process (and per worker after a fork), made on first use
    if _LARGE_BODY_WORKER is None:
        _LARGE_BODY_WORKER = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="large-body-redaction"
        )
    return _LARGE_BODY_WORKER


def _redact_and_hash(redactor: redaction.Redactor, body: bytes) -> tuple[bytes, str]:
    """A large body's stored bytes and their SHA-256, in a worker thread (``redactor`` is a copy
    of the exchange's, so what it learns is merged back on the event loop)."""
    redacted = redactor.body(body)
    return redacted, hashlib.sha256(redacted).hexdigest()


class RequestEvent:
    """The exchange's request event: built while the upstream works, emitted exactly once, and
    always before any other event of the exchange.

    ``start()`` runs as a loop callback once the upstream request is sent: it redacts the body
    and emits. A large body is redacted and hashed in a worker thread instead, on a copy of the
    redactor: 30 MB take ~0.2 s of CPU (seconds on a busy host), which on the event loop would
    hold up every other exchange, and time out their upstream connects (docs/PERFORMANCE.md,
    "Large uploads"). The event is emitted when the thread is done. ``finished()`` (when the
    response head arrives) waits for that, and merges what the copy learnt before any response
    chunk is redacted; ``emit()`` (no-op once emitted) builds whatever is missing inline, so a
    failed, timed-out or cancelled exchange still has its request event first.
    """

    # It holds what it needs itself, not its Exchange (which holds it): no reference cycle, so
    # reference counting frees both with the request (the cyclic collector is tuned down).
    __slots__ = (
        "_copy",
        "_key",
        "_recorder",
        "_redacted",
        "_redactor",
        "_sha256",
        "_trace",
        "_work",
        "captured",
        "emitted",
    )

    def __init__(
        self,
        captured: capture.CapturedRequest,
        *,
        recorder: EventRecorder,
        key: bytes,
        trace: telemetry.Headers | None,
        redactor: redaction.Redactor,
    ) -> None:
        self.captured = captured
        self._recorder = recorder
        self._key = key
        self._trace = trace
        self._redactor = redactor
        self._redacted: bytes | None = None
        self._sha256: str | None = None
        self._copy: redaction.Redactor | None = None  # the worker thread's redactor
        self._work: asyncio.Future[tuple[bytes, str]] | None = None
        self.emitted = False

    def start(self) -> None:
        if self.emitted or self._redacted is not None or self._work is not None:
            return
        body = self.captured.body
        if len(body) <= LARGE_BODY:
            self._redacted = self._redactor.body(body)
            self.emit()
            return
        loop = asyncio.get_running_loop()
        self._copy = self._redactor.copy()
        self._work = loop.run_in_executor(_large_bodies(), _redact_and_hash, self._copy, body)
        self._work.add_done_callback(self._done_in_thread)

    def _done_in_thread(self, _: object = None) -> None:
        self._take_work()
        self.emit()

    def _take_work(self) -> None:
        """Adopt the worker thread's result and what its redactor learnt (once, on the loop)."""
        work, copy = self._work, self._copy
        if work is None or copy is None or not work.done():
            return
        self._copy = None
        if work.cancelled() or work.exception() is not None:
            return  # emit() redacts inline
        self._redactor.merge(copy)
        if not self.emitted:
            self._redacted, self._sha256 = work.result()

    async def finished(self) -> None:
        if self._work is not None and not self.emitted:
            # asyncio.wait never cancels the thread's future, even if we are cancelled here.
            await asyncio.wait((self._work,))
        self._take_work()
        self.emit()

    def emit(self) -> None:
        if self.emitted:
            return
        self.emitted = True
        record = capture.request_event(
            self.captured,
            redactor=self._redactor,
            redacted_body=self._redacted,
            body_sha256=self._sha256,
        )
        self._recorder.emit(EventType.REQUEST, self._key, record, self._trace)


class Exchange:
    """One request and its answer, from the request line to the completed event.

    Carries what every step needs: the ids, the credentials redactor, the outcome so far, the
    body, the URL sent upstream, and the request event once the request is known.
    """

    __slots__ = (
        "body",
        "dialect",
        "id",
        "key",
        "outcome",
        "received_at_us",
        "recorder",
        "redactor",
        "request_event",
        "sent_url",
        "started_ns",
        "trace",
    )

    def __init__(self, recorder: EventRecorder, redactor: redaction.Redactor, dialect: str) -> None:
        self.started_ns = time.monotonic_ns()
        self.received_at_us = time.time_ns() // 1000
        self.id = capture.new_request_id()
        self.key = self.id.encode()
        # Trace context for the request and completed events (None unless tracing is on).
        self.trace = telemetry.trace_headers()
        self.recorder = recorder
        self.redactor = redactor
        self.dialect = dialect  # the API whose shape its errors take
        self.outcome = Outcome()
        self.body = b""
        self.sent_url = ""  # exactly what goes on the request line, scheme and host in front
        self.request_event: RequestEvent | None = None

    def capture_request(self, captured: capture.CapturedRequest) -> RequestEvent:
        self.request_event = RequestEvent(
            captured, recorder=self.recorder, key=self.key, trace=self.trace, redactor=self.redactor
        )
        return self.request_event

    def error(
        self, status: int, error_type: str, message: str, code: str | None = None
    ) -> web.Response:
        """An error answer in the API's own shape, naming the exchange."""
        return web.Response(
            status=status,
            body=error_body(self.dialect, message, error_type=error_type, code=code),
            content_type="application/json",
            headers={REQUEST_ID_HEADER: self.id},
        )

    def since_start_ns(self) -> int:
        return time.monotonic_ns() - self.started_ns

    def chunk(self, offset_ns: int, data: bytes, *, delivered: bool, redact: bool = True) -> None:
        """Record one read from the upstream (numbered by ``outcome.chunks``)."""
        self.recorder.emit(
            EventType.CHUNK,
            self.key,
            capture.chunk_event(
                request_id=self.id,
                seq=self.outcome.chunks,
                offset_ns=offset_ns,
                data=data,
                max_bytes=self.recorder.max_event_payload,
                delivered=delivered,
                redactor=self.redactor if redact else None,
            ),
        )

    def finish(self, response: web.StreamResponse | None) -> None:
        """Emit the completed event and hand the exchange's events to the kernel: called before
        the last byte goes to the client, or (for a response aiohttp sends after the handler
        returns, or an exchange cut short) when the handler ends."""
        state = self.outcome
        if state.finished:
            return
        state.finished = True
        if response is not None and not response.prepared:
            state.status = response.status
        if self.request_event is not None:
            self.request_event.emit()  # if the upstream failed before it could: still first
        recorder = self.recorder
        recorder.emit(
            EventType.COMPLETED,
            self.key,
            capture.completed_event(
                request_id=self.id,
                status=state.status,
                outcome=state.outcome,
                error_type=state.error_type,
                error_message=state.error_message,
                upstream_status=state.upstream_status,
                response_headers=response.headers if response is not None else {},
                ttfb_ns=state.ttfb_ns,
                duration_ns=time.monotonic_ns() - self.started_ns,
                bytes_in=len(self.body),
                bytes_out=state.bytes_out,
                chunk_count=state.chunks,
                fingerprinter=recorder.fingerprinter,
            ),
            self.trace,
        )
        recorder.write_through()
