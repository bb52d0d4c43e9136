"""The hot path: stream the upstream's bytes to the client and report every step to Kafka.

For each exchange one request event, one chunk event per read from the upstream and one completed
event are handed to the publisher, which never blocks. Client writes are awaited, so a slow client
slows the upstream read and memory stays bounded.

Served means captured, even if the proxy is killed: the publisher's journal gets every event, and
the exchange's events are handed to the kernel (``Publisher.write_through``, one ``write``) before
the response head goes out (the client then knows a request id) and, with the completed event,
before the last byte does (the client then knows the exchange is complete). Chunk events in
between ride with the next such write.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl
from aiohttp import web

from proxy import capture, telemetry
from proxy.errors import BodyTimeoutError, error_body
from proxy.forwarded import resolve_client_ip
from proxy.guard import Rejection, read_body
from proxy.publisher import Publisher
from proxy.routing import (
    Endpoint,
    NoRoute,
    PathRefusal,
    Route,
    Router,
    models_body,
    upstream_path,
    with_model,
)
from proxy.settings import ProxySettings
from proxy.upstream import response_headers, upstream_headers, upstream_query
from schemas import Codec, EventType

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-logorhythms-request-id"
# Bodies above this are sent upstream as a file-like object and hashed in a worker thread.
LARGE_BODY = 64 * 1024
# A write this small into an empty transport buffer cannot reach the high-water mark (64 KiB).
WRITE_NEVER_WAITS = 16 * 1024
_INSTANCE = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)
class _Outcome:
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


class _HeadWithBodyResponse(web.StreamResponse):
    """A streamed response whose head waits for the first body bytes and goes out with them.

    aiohttp's own ``web.Response`` works this way (``_send_headers_immediately = False``); a plain
    StreamResponse sends its head alone at ``prepare()``. Used only for sized, non-SSE upstream
    bodies, where a client cannot do anything with the head before the body. Should aiohttp drop
    the attribute, the head is simply sent at ``prepare()`` again.
    """

    _send_headers_immediately = False


def _write_may_wait(transport: asyncio.Transport | None, size: int) -> bool:
    """Whether writing ``size`` more bytes to the client may have to wait for it.

    aiohttp's write suspends only while the transport is paused, i.e. its buffer is above the
    high-water mark (64 KiB by default). With an empty buffer and a small write it cannot pause,
    so the client write deadline need not be moved (a timer cancelled and re-armed per chunk):
    the read deadline, armed already, stays in force and cannot fire during a write that does
    not wait.
    """
    if transport is None:
        return True
    return transport.get_write_buffer_size() + size > WRITE_NEVER_WAITS


def _is_event_stream(upstream: aiohttp.ClientResponse) -> bool:
    return upstream.content_type == "text/event-stream"


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _RequestEvent:
    """The exchange's request event: built while the upstream works, emitted exactly once, and
    always before any other event of the exchange.

    ``start()`` runs as a loop callback once the upstream request is sent: it redacts the body
    and, for a large one, hashes it in a worker thread (hashlib releases the GIL), emitting when
    the digest is there. ``finished()`` (when the response head arrives) waits for that; ``emit()``
    (no-op once emitted) builds whatever is missing inline, so a failed, timed-out or cancelled
    exchange still has its request event first.
    """

    __slots__ = ("_body", "_build", "_digest", "_publish", "_redacted", "_redactor", "emitted")

    def __init__(
        self,
        publish: Callable[[dict[str, Any]], None],
        body: bytes,
        redactor: capture.Redactor,
        build: Callable[..., dict[str, Any]],
    ) -> None:
        self._publish = publish
        self._body = body
        self._redactor = redactor
        self._build = build  # capture.request_event with every field but the body's
        self._redacted: bytes | None = None
        self._digest: asyncio.Future[str] | None = None
        self.emitted = False

    def start(self) -> None:
        if self.emitted or self._redacted is not None:
            return
        self._redacted = self._redactor.body(self._body)
        if len(self._redacted) <= LARGE_BODY:
            self.emit()
            return
        loop = asyncio.get_running_loop()
        self._digest = loop.run_in_executor(None, _sha256_hex, self._redacted)
        self._digest.add_done_callback(lambda _: self.emit())

    async def finished(self) -> None:
        if self._digest is not None and not self.emitted:
            # asyncio.wait never cancels the thread's future, even if we are cancelled here.
            await asyncio.wait((self._digest,))
        self.emit()

    def emit(self) -> None:
        if self.emitted:
            return
        self.emitted = True
        digest, sha256 = self._digest, None
        if digest is not None and digest.done() and not digest.cancelled():
            sha256 = digest.result() if digest.exception() is None else None
        self._publish(
            self._build(
                body=self._body,
                redactor=self._redactor,
                redacted_body=self._redacted,
                body_sha256=sha256,
            )
        )


class Forwarder:
    def __init__(
        self,
        *,
        settings: ProxySettings,
        session: aiohttp.ClientSession,
        publisher: Publisher,
        codec: Codec,
        router: Router,
    ) -> None:
        self._settings = settings
        self._session = session
        self._publisher = publisher
        self._codec = codec
        self._router = router
        self._fingerprinter = capture.Fingerprinter(settings.fingerprint_key.reveal().encode())
        self._service_secrets = tuple(p.api_key.reveal() for p in settings.providers if p.api_key)
        # An upstream that echoes the Authorization it got would hand the service's own key to an
        # anonymous client: that one secret is masked in what the client receives too.
        self._shield = capture.Redactor.masking(self._fingerprinter, self._service_secrets)
        self._max_event_payload = settings.max_event_bytes - 4096  # room for the other fields
        self._models_body = models_body(settings)
        self.lists_models = any(p.models for p in settings.providers) or bool(settings.model_map)
        self.served = 0

    def _emit(
        self,
        event_type: EventType,
        key: bytes,
        record: dict[str, Any],
        headers: telemetry.Headers | None = None,
    ) -> None:
        if not self._settings.capture:  # benchmarks only: price the capture by switching it off
            return
        try:
            value = self._codec.encode(event_type, record)
        except Exception:  # a capture bug must never break the client's response
            log.exception("could not encode a %s event; it is lost", event_type.value)
            self._publisher.record_drop(key, "encode_error")
            return
        self._publisher.publish(key, value, headers)

    async def handle(
        self, request: web.Request, endpoint: Endpoint, rejection: Rejection | None = None
    ) -> web.StreamResponse:
        """Serve and capture one exchange; ``rejection``: refused by proxy.guard, so the body is
        never read."""
        started = time.monotonic_ns()
        received_at_us = time.time_ns() // 1000
        request_id = capture.new_request_id()
        key = request_id.encode()
        self.served += 1
        # Trace context for the request and completed events (None unless tracing is on).
        trace = telemetry.trace_headers()
        raw_headers = [
            (k.decode("latin-1"), v.decode("utf-8", "backslashreplace"))
            for k, v in request.raw_headers
        ]
        headers, client_key_fp = self._fingerprinter.headers(raw_headers)
        peer_ip = request.remote or ""
        forwarded_for = request.headers.get("X-Forwarded-For")
        raw_query = request.rel_url.raw_query_string
        redactor = self._fingerprinter.redactor(
            raw_headers, raw_query, self._service_secrets, request.rel_url.raw_path
        )
        path: str | None = None  # the validated path, sent upstream exactly as it is
        if rejection is None and endpoint.kind == "forward":
            checked = upstream_path(request.raw_path, request.rel_url.raw_path, raw_query)
            if isinstance(checked, PathRefusal):
                rejection = Rejection(
                    status=checked.status,
                    error_type="invalid_request_error",
                    reason=checked.reason,
                    message=checked.message,
                )
            else:
                path = checked
        state = _Outcome()
        body = b""
        if rejection is not None:
            state.fail("rejected", rejection.reason, rejection.message)
        else:
            try:
                body = await read_body(
                    request,
                    max_bytes=self._settings.max_body_bytes,
                    first_byte_timeout_s=self._settings.body_first_byte_timeout_s,
                    read_timeout_s=self._settings.body_read_timeout_s,
                )
            except BodyTimeoutError as exc:
                state.fail("rejected", "body_timeout", str(exc))
            except web.HTTPRequestEntityTooLarge:
                state.fail("rejected", "body_too_large", "request body exceeds the size limit")
            except ConnectionResetError:
                # The client went away mid-upload: still one exchange with a terminal event.
                state.fail("client_disconnect", "client_reset", "the client left mid-body")
        model, stream = capture.peek_json(body)
        route = (
            self._router.route(endpoint, path, model)
            if not state.error_type and path is not None
            else None
        )
        routed = route if isinstance(route, Route) else None
        sent_url = ""  # exactly what goes on the request line, scheme and host in front
        if routed is not None:
            query = upstream_query(raw_query, routed.provider)
            sent_url = routed.upstream_url + (f"?{query}" if query else "")
        request_event = _RequestEvent(
            lambda record: self._emit(EventType.REQUEST, key, record, trace),
            body,
            redactor,
            functools.partial(
                capture.request_event,
                request_id=request_id,
                received_at_us=received_at_us,
                method=request.method,
                path=redactor.text(request.path),
                query=self._fingerprinter.query(raw_query),
                headers=headers,
                peer_ip=peer_ip,
                forwarded_for=forwarded_for,
                client_ip=resolve_client_ip(peer_ip, forwarded_for, self._settings.trusted_proxies),
                client_key_fingerprint=client_key_fp,
                max_body_in_event=self._max_event_payload,
                model_requested=model,
                stream=stream,
                endpoint=endpoint.path,
                dialect=endpoint.dialect,
                provider=routed.provider.name if routed else "",
                upstream_url=redactor.text(sent_url),
                model_sent=routed.model_sent if routed else None,
                proxy_instance=_INSTANCE,
                refused_size=(
                    request.content_length or 0 if state.error_type == "body_too_large" else None
                ),
            ),
        )
        if routed is None or state.error_type:
            request_event.emit()  # nothing to wait for: the event goes out first, now
        response: web.StreamResponse | None = None

        def finish(response: web.StreamResponse | None) -> None:
            """Emit the completed event and hand the exchange's events to the kernel: called
            before the last byte goes to the client, or (for a response aiohttp sends after the
            handler returns, or an exchange cut short) when the handler ends."""
            if state.finished:
                return
            state.finished = True
            if response is not None and not response.prepared:
                state.status = response.status
            request_event.emit()  # if the upstream failed before it could: still the first event
            self._emit(
                EventType.COMPLETED,
                key,
                capture.completed_event(
                    request_id=request_id,
                    status=state.status,
                    outcome=state.outcome,
                    error_type=state.error_type,
                    error_message=state.error_message,
                    upstream_status=state.upstream_status,
                    response_headers=response.headers if response is not None else {},
                    ttfb_ns=state.ttfb_ns,
                    duration_ns=time.monotonic_ns() - started,
                    bytes_in=len(body),
                    bytes_out=state.bytes_out,
                    chunk_count=state.chunks,
                    fingerprinter=self._fingerprinter,
                ),
                trace,
            )
            self._publisher.write_through()

        try:
            if rejection is not None:
                response = self._error(
                    request_id, endpoint, rejection.status, rejection.error_type, rejection.message
                )
                response.headers.update(rejection.headers)
                if rejection.close:
                    response.force_close()
            elif state.error_type == "body_timeout":
                # The connection goes too: its request is unfinished (proxy/protocol.py closes
                # it at once instead of waiting for the rest of the body).
                response = self._error(
                    request_id, endpoint, 408, "invalid_request_error", state.error_message or ""
                )
                response.force_close()
            elif state.error_type == "client_reset":
                response = self._error(
                    request_id, endpoint, 400, "invalid_request_error", "Incomplete request body."
                )
            elif state.error_type == "body_too_large":
                limit = self._settings.max_body_bytes
                response = self._error(
                    request_id,
                    endpoint,
                    413,
                    "request_too_large",
                    f"Request body is larger than {limit} bytes; send a smaller request.",
                )
            elif isinstance(route, NoRoute):
                state.fail("rejected", "unknown_model", route.message)
                kind = (
                    "not_found_error"
                    if endpoint.dialect == "anthropic"
                    else "invalid_request_error"
                )
                response = self._error(
                    request_id, endpoint, 404, kind, route.message, code="model_not_found"
                )
            elif routed is None:  # an endpoint the proxy answers itself
                response = self._local(request_id, key, started, state)
            else:
                response = await self._forward(
                    request, endpoint, routed, sent_url, raw_headers, body, model, key, started,
                    state, request_id, redactor, request_event, finish,
                )  # fmt: skip
            return response
        except asyncio.CancelledError:
            state.fail("client_disconnect", "cancelled", "the client went away")
            raise
        finally:
            finish(response)

    def _chunk(
        self,
        key: bytes,
        request_id: str,
        state: _Outcome,
        offset: int,
        data: bytes,
        delivered: bool,
        redactor: capture.Redactor | None = None,
    ) -> None:
        self._emit(
            EventType.CHUNK,
            key,
            capture.chunk_event(
                request_id=request_id,
                seq=state.chunks,
                offset_ns=offset,
                data=data,
                max_bytes=self._max_event_payload,
                delivered=delivered,
                redactor=redactor,
            ),
        )

    def _local(self, request_id: str, key: bytes, started: int, state: _Outcome) -> web.Response:
        """GET /v1/models, answered by the proxy itself and captured like any other exchange."""
        body = self._models_body
        state.ttfb_ns = time.monotonic_ns() - started
        state.chunks, state.bytes_out = 1, len(body)
        self._chunk(key, request_id, state, state.ttfb_ns, body, delivered=True)
        return web.Response(
            body=body, content_type="application/json", headers={REQUEST_ID_HEADER: request_id}
        )

    async def _forward(
        self,
        request: web.Request,
        endpoint: Endpoint,
        route: Route,
        sent_url: str,
        raw_headers: list[tuple[str, str]],
        body: bytes,
        model: str | None,
        key: bytes,
        started: int,
        state: _Outcome,
        request_id: str,
        redactor: capture.Redactor,
        request_event: _RequestEvent,
        finish: Callable[[web.StreamResponse | None], None],
    ) -> web.StreamResponse:
        """Stream one upstream response to the client, every read timed and reported.

        One deadline is moved along as the exchange goes: the response head must arrive within
        the first-byte timeout, each later read within the between-chunks timeout, and each
        write to the client within the client write timeout. ``phase`` says which one ran out.
        """
        settings = self._settings
        loop = asyncio.get_running_loop()
        response: web.StreamResponse | None = None
        phase = "first_byte"
        pending: tuple[int, bytes] | None = None  # read from upstream, not yet written
        sent_body = body if route.model_sent == model else with_model(body, route.model_sent)
        deadline = asyncio.timeout(settings.upstream_first_byte_timeout_s)
        # Build the request event while the upstream works, not before calling it: aiohttp writes
        # the request from a task it creates during this iteration of the loop, so a callback
        # queued two iterations ahead runs once the request is on the wire. (Were it to run
        # earlier or later, only the overlap is lost: the event is emitted at the latest when the
        # response head arrives, always before any chunk event.)
        loop.call_soon(loop.call_soon, request_event.start)
        try:
            async with (
                deadline,
                self._session.request(
                    request.method,
                    # Sent as it is: aiohttp neither re-encodes nor removes dot segments from an
                    # encoded URL, so the upstream sees the path proxy.routing checked.
                    yarl.URL(sent_url, encoded=True),
                    # A large body goes as a file-like object, written in pieces (bytes above
                    # 1 MiB would block the event loop while being sent; aiohttp warns).
                    data=sent_body if len(sent_body) <= LARGE_BODY else io.BytesIO(sent_body),
                    headers=upstream_headers(raw_headers, route.provider),
                    allow_redirects=False,  # a redirect must never steer us to another host
                ) as upstream,
            ):
                state.upstream_status = upstream.status
                await request_event.finished()
                # A sized, non-streamed body: send the head with the first body bytes in one
                # system call (each one costs ~20-50 µs on a VM's loopback) instead of two.
                sized = upstream.content_length is not None and not _is_event_stream(upstream)
                response = (_HeadWithBodyResponse if sized else web.StreamResponse)(
                    status=upstream.status,
                    reason=upstream.reason,
                    headers=response_headers(upstream.headers),
                )
                response.headers[REQUEST_ID_HEADER] = request_id
                phase = "write"
                if _write_may_wait(request.transport, 0):
                    deadline.reschedule(loop.time() + settings.client_write_timeout_s)
                if not sized:
                    self._publisher.write_through()  # the head (and the request id) goes now
                await response.prepare(request)
                state.status = upstream.status
                if upstream.status >= 400:
                    state.fail(
                        "upstream_http_error", f"http_{upstream.status}", upstream.reason or ""
                    )
                while True:
                    phase = "read"
                    deadline.reschedule(loop.time() + settings.upstream_read_timeout_s)
                    data = await upstream.content.readany()
                    if not data:
                        break
                    offset = time.monotonic_ns() - started
                    if state.ttfb_ns is None:
                        state.ttfb_ns = offset
                    state.chunks += 1
                    pending = (offset, data)
                    phase = "write"
                    if _write_may_wait(request.transport, len(data)):
                        deadline.reschedule(loop.time() + settings.client_write_timeout_s)
                    # A sized body is complete for the client with its last byte, before the
                    # upstream's end is read: the exchange is finished before writing that.
                    last = (
                        sized
                        and state.bytes_out + len(data) >= (upstream.content_length or 0)
                        and request.transport is not None
                        and not request.transport.is_closing()
                    )
                    if last:
                        pending = None
                        self._chunk(
                            key, request_id, state, offset, data, delivered=True, redactor=redactor
                        )
                        state.bytes_out += len(data)
                        finish(response)
                    elif sized and state.chunks == 1:
                        self._publisher.write_through()  # the head goes out with these bytes
                    try:
                        await response.write(self._shield.known(data))
                    except ConnectionResetError:
                        if last:
                            return response  # recorded as ended already (docs/OPERATIONS.md)
                        # Policy: stop reading the upstream (leaving the block cancels the
                        # upstream request, so no more tokens are generated and billed).
                        self._chunk(
                            key, request_id, state, offset, data, delivered=False, redactor=redactor
                        )
                        state.fail(
                            "client_disconnect", "client_reset", "the client closed the connection"
                        )
                        return response
                    if last:
                        continue
                    pending = None
                    self._chunk(
                        key, request_id, state, offset, data, delivered=True, redactor=redactor
                    )
                    state.bytes_out += len(data)
                finish(response)  # before the terminating bytes: the client sees it complete
                await response.write_eof()
                return response
        except TimeoutError as exc:  # ours, and aiohttp's connect and total timeouts
            if pending is not None:
                self._chunk(key, request_id, state, *pending, delivered=False, redactor=redactor)
            if not deadline.expired():  # aiohttp's own
                connecting = isinstance(exc, aiohttp.ConnectionTimeoutError)
                phase = "connect" if connecting else "total"
            if phase == "write" and response is not None:
                state.fail(
                    "client_write_timeout",
                    "client_write_timeout",
                    f"the client read nothing for {settings.client_write_timeout_s}s",
                )
                if request.transport is not None:
                    request.transport.abort()  # a stalled client gets no more of our memory
                return response
            what = {
                "connect": "timed out connecting to the upstream",
                "first_byte": "the upstream did not answer in time",
                "read": "the upstream stopped sending mid-response",
                "total": "the upstream took longer than the total timeout",
            }[phase]
            state.fail("upstream_timeout", f"{phase}_timeout", what)
            return await self._upstream_failed(
                request, request_id, endpoint, response, state, 504, finish
            )
        except aiohttp.ClientConnectorError as exc:
            state.fail(
                "connect_error",
                type(exc).__name__,
                f"cannot connect to upstream {route.provider.name} at {exc.host}:{exc.port}: "
                f"{exc.os_error.strerror or exc.os_error}",
            )
            return await self._upstream_failed(
                request, request_id, endpoint, response, state, 502, finish
            )
        except (
            aiohttp.ClientPayloadError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
        ) as exc:
            state.fail(
                "upstream_disconnect",
                type(exc).__name__,
                "the upstream closed the connection mid-response",
            )
            return await self._upstream_failed(
                request, request_id, endpoint, response, state, 502, finish
            )
        except aiohttp.ClientError as exc:
            state.fail("proxy_error", type(exc).__name__, "the upstream request failed")
            log.warning("upstream request %s failed: %r", request_id, exc)
            return await self._upstream_failed(
                request, request_id, endpoint, response, state, 502, finish
            )

    async def _upstream_failed(
        self,
        request: web.Request,
        request_id: str,
        endpoint: Endpoint,
        response: web.StreamResponse | None,
        state: _Outcome,
        status: int,
        finish: Callable[[web.StreamResponse | None], None],
    ) -> web.StreamResponse:
        message = f"{state.error_message}. Logorhythms request id {request_id}; try again."
        if response is None:
            return self._error(request_id, endpoint, status, "upstream_error", message)
        # Headers are gone already: end the stream the way the API itself reports late errors.
        finish(response)
        if response.content_type == "text/event-stream":
            body = error_body(endpoint.dialect, message, error_type="upstream_error")
            frame = (
                b"event: error\ndata: " + body + b"\n\n"
                if endpoint.dialect == "anthropic"
                else b"data: " + body + b"\n\n"
            )
            try:
                async with asyncio.timeout(self._settings.client_write_timeout_s):
                    await response.write(frame)
                    await response.write_eof()
                return response
            except (ConnectionResetError, TimeoutError):
                pass
        if request.transport is not None:
            request.transport.close()  # a truncated body must not look complete
        return response

    def _error(
        self,
        request_id: str,
        endpoint: Endpoint,
        status: int,
        error_type: str,
        message: str,
        code: str | None = None,
    ) -> web.Response:
        return web.Response(
            status=status,
            body=error_body(endpoint.dialect, message, error_type=error_type, code=code),
            content_type="application/json",
            headers={REQUEST_ID_HEADER: request_id},
        )
