"""Send one exchange upstream and stream the answer to the client, every read timed and reported.

Client writes are awaited, so a slow client slows the upstream read and memory stays bounded.
Served means captured, even if the proxy is killed: the exchange's events are handed to the
kernel (``EventRecorder.write_through``, one ``write``) before the response head goes out (the
client then knows a request id) and, with the completed event, before the last byte does (the
client then knows the exchange is complete). Chunk events in between ride with the next such write.
"""

from __future__ import annotations

import asyncio
import io
import logging

import aiohttp
import yarl
from aiohttp import web

from proxy import redaction
from proxy.errors import error_body
from proxy.exchange import LARGE_BODY, REQUEST_ID_HEADER, Exchange, RequestEvent
from proxy.routing import Route
from proxy.settings import ProxySettings
from proxy.upstream import response_headers, upstream_headers

log = logging.getLogger(__name__)

# A write this small into an empty transport buffer cannot reach the high-water mark (64 KiB).
WRITE_NEVER_WAITS = 16 * 1024
_TIMEOUTS = {
    "connect": "timed out connecting to the upstream",
    "first_byte": "the upstream did not answer in time",
    "read": "the upstream stopped sending mid-response",
    "total": "the upstream took longer than the total timeout",
}


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


class Relay:
    """One exchange's trip upstream and back.

    One deadline is moved along as the exchange goes: the response head must arrive within the
    first-byte timeout, each later read within the between-chunks timeout, and each write to the
    client within the client write timeout. ``_phase`` says which one is running.
    """

    __slots__ = (
        "_client_headers",
        "_deadline",
        "_exchange",
        "_pending",
        "_phase",
        "_request",
        "_request_event",
        "_response",
        "_route",
        "_session",
        "_settings",
        "_shield",
        "_sized",
    )

    def __init__(
        self,
        exchange: Exchange,
        request: web.Request,
        route: Route,
        request_event: RequestEvent,
        client_headers: list[tuple[str, str]],
        *,
        session: aiohttp.ClientSession,
        settings: ProxySettings,
        shield: redaction.Redactor,
    ) -> None:
        self._exchange = exchange
        self._request = request
        self._route = route
        self._request_event = request_event
        self._client_headers = client_headers
        self._session = session
        self._settings = settings
        self._shield = shield  # masks the service's own key in what the client receives
        self._deadline = asyncio.timeout(settings.upstream_first_byte_timeout_s)
        self._phase = "first_byte"
        self._pending: tuple[int, bytes] | None = None  # read from upstream, not yet written
        self._response: web.StreamResponse | None = None
        self._sized = False

    async def run(self, sent_body: bytes) -> web.StreamResponse:
        """Send ``sent_body`` upstream and stream the answer; every failure becomes an answer."""
        # Build the request event while the upstream works, not before calling it: aiohttp writes
        # the request from a task it creates during this iteration of the loop, so a callback
        # queued two iterations ahead runs once the request is on the wire. (Were it to run
        # earlier or later, only the overlap is lost: the event is emitted at the latest when the
        # response head arrives, always before any chunk event.)
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, self._request_event.start)
        state = self._exchange.outcome
        try:
            async with (
                self._deadline,
                self._session.request(
                    self._request.method,
                    # Sent as it is: aiohttp neither re-encodes nor removes dot segments from an
                    # encoded URL, so the upstream sees the path proxy.routing checked.
                    yarl.URL(self._exchange.sent_url, encoded=True),
                    # A large body goes as a file-like object, written in pieces (bytes above
                    # 1 MiB would block the event loop while being sent; aiohttp warns).
                    data=sent_body if len(sent_body) <= LARGE_BODY else io.BytesIO(sent_body),
                    headers=upstream_headers(self._client_headers, self._route.provider),
                    allow_redirects=False,  # a redirect must never steer us to another host
                ) as upstream,
            ):
                response = await self._open(upstream)
                return await self._stream(upstream, response)
        except TimeoutError as exc:  # ours, and aiohttp's connect and total timeouts
            return await self._timed_out(exc)
        except aiohttp.ClientConnectorError as exc:
            state.fail(
                "connect_error",
                type(exc).__name__,
                f"cannot connect to upstream {self._route.provider.name} at {exc.host}:{exc.port}: "
                f"{exc.os_error.strerror or exc.os_error}",
            )
            return await self._failed(502)
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
            return await self._failed(502)
        except aiohttp.ClientError as exc:
            state.fail("proxy_error", type(exc).__name__, "the upstream request failed")
            log.warning("upstream request %s failed: %r", self._exchange.id, exc)
            return await self._failed(502)

    async def _open(self, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        """Send the response head: at once for a stream, with the first body bytes for a sized
        body."""
        exchange, state, request = self._exchange, self._exchange.outcome, self._request
        state.upstream_status = upstream.status
        await self._request_event.finished()
        # A sized, non-streamed body: send the head with the first body bytes in one system call
        # instead of two.
        sized = upstream.content_length is not None and upstream.content_type != "text/event-stream"
        self._sized = sized
        response = self._response = (_HeadWithBodyResponse if sized else web.StreamResponse)(
            status=upstream.status,
            reason=upstream.reason,
            headers=response_headers(upstream.headers),
        )
        response.headers[REQUEST_ID_HEADER] = exchange.id
        self._phase = "write"
        if _write_may_wait(request.transport, 0):
            self._deadline.reschedule(self._now() + self._settings.client_write_timeout_s)
        if not sized:
            exchange.recorder.write_through()  # the head (and the request id) goes now
        await response.prepare(request)
        state.status = upstream.status
        if upstream.status >= 400:
            state.fail("upstream_http_error", f"http_{upstream.status}", upstream.reason or "")
        return response

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _stream(
        self, upstream: aiohttp.ClientResponse, response: web.StreamResponse
    ) -> web.StreamResponse:
        """Copy every upstream read to the client, each reported as a chunk event."""
        exchange, state, request = self._exchange, self._exchange.outcome, self._request
        settings, deadline, sized = self._settings, self._deadline, self._sized
        loop = asyncio.get_running_loop()
        while True:
            self._phase = "read"
            deadline.reschedule(loop.time() + settings.upstream_read_timeout_s)
            data = await upstream.content.readany()
            if not data:
                break
            offset = exchange.since_start_ns()
            if state.ttfb_ns is None:
                state.ttfb_ns = offset
            state.chunks += 1
            self._pending = (offset, data)
            self._phase = "write"
            if _write_may_wait(request.transport, len(data)):
                deadline.reschedule(loop.time() + settings.client_write_timeout_s)
            # A sized body is complete for the client with its last byte, before the upstream's
            # end is read: the exchange is finished before writing that.
            last = (
                sized
                and state.bytes_out + len(data) >= (upstream.content_length or 0)
                and request.transport is not None
                and not request.transport.is_closing()
            )
            if last:
                self._pending = None
                exchange.chunk(offset, data, delivered=True)
                state.bytes_out += len(data)
                exchange.finish(response)
            elif sized and state.chunks == 1:
                exchange.recorder.write_through()  # the head goes out with these bytes
            try:
                await response.write(self._shield.known(data))
            except ConnectionResetError:
                if last:
                    return response  # recorded as ended already (docs/OPERATIONS.md)
                # Policy: stop reading the upstream (leaving the block cancels the upstream
                # request, so no more tokens are generated and billed).
                exchange.chunk(offset, data, delivered=False)
                state.fail("client_disconnect", "client_reset", "the client closed the connection")
                return response
            if last:
                continue
            self._pending = None
            exchange.chunk(offset, data, delivered=True)
            state.bytes_out += len(data)
        exchange.finish(response)  # before the terminating bytes: the client sees it complete
        await response.write_eof()
        return response

    async def _timed_out(self, exc: TimeoutError) -> web.StreamResponse:
        exchange, phase = self._exchange, self._phase
        if self._pending is not None:
            exchange.chunk(*self._pending, delivered=False)
        if not self._deadline.expired():  # aiohttp's own
            phase = "connect" if isinstance(exc, aiohttp.ConnectionTimeoutError) else "total"
        if phase == "write" and self._response is not None:
            exchange.outcome.fail(
                "client_write_timeout",
                "client_write_timeout",
                f"the client read nothing for {self._settings.client_write_timeout_s}s",
            )
            if self._request.transport is not None:
                self._request.transport.abort()  # a stalled client gets no more of our memory
            return self._response
        exchange.outcome.fail("upstream_timeout", f"{phase}_timeout", _TIMEOUTS[phase])
        return await self._failed(504)

    async def _failed(self, status: int) -> web.StreamResponse:
        """Answer an upstream failure: an error response, or, once the head is out, an error
        frame on a stream and a closed connection on anything else."""
        exchange, response = self._exchange, self._response
        message = (
            f"{exchange.outcome.error_message}. Logorhythms request id {exchange.id}; try again."
        )
        if response is None:
            return exchange.error(status, "upstream_error", message)
        # Headers are gone already: end the stream the way the API itself reports late errors.
        exchange.finish(response)
        if response.content_type == "text/event-stream":
            body = error_body(exchange.dialect, message, error_type="upstream_error")
            frame = (
                b"event: error\ndata: " + body + b"\n\n"
                if exchange.dialect == "anthropic"
                else b"data: " + body + b"\n\n"
            )
            try:
                async with asyncio.timeout(self._settings.client_write_timeout_s):
                    await response.write(frame)
                    await response.write_eof()
                return response
            except (ConnectionResetError, TimeoutError):
                pass
        if self._request.transport is not None:
            self._request.transport.close()  # a truncated body must not look complete
        return response
