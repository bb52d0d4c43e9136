"""The HTTP connection handler: every answer in the API's error shape, even when no handler ran.

aiohttp answers some requests itself, in plain text: those its parser refuses (oversized or too
many headers, Content-Length with Transfer-Encoding, an invalid method, an over-long or malformed
request line; ``HTTP/1.0 400`` quoting ~100 bytes of the request back), those no route matches
(``CONNECT host:443``, ``OPTIONS *``: ``404: Not Found`` with the connection left open), and a
handler's crash (500). It offers no public hook for these (aio-libs/aiohttp#3287), so the proxy
runs its own ``RequestHandler`` subclass: the same answers, as JSON in OpenAI's error shape (or
Anthropic's, for ``/v1/messages`` or an ``anthropic-version`` header), echoing nothing of the
request, and closing the connection.

The subclass is installed by ``ApiAppRunner`` (an ``AppRunner`` whose server builds it);
``proxy.app.serve`` and the tests run the proxy with it. It relies on three aiohttp internals
that have been stable across 3.x (``Server._kwargs``/``_loop``, ``RequestHandler._messages``
with ``_ErrInfo``, ``_lingering_time``); tests/unit/proxy/test_protocol.py fails if they change.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidURLError,
    LineTooLong,
)
from aiohttp.web_protocol import RequestHandler, _ErrInfo
from aiohttp.web_request import BaseRequest

from proxy.errors import error_body
from proxy.guard import HTTP_SERVER_LOG, GuardStats

# A refused request has no parsed path or headers: the dialect is guessed from the bytes that
# failed (the request line or the anthropic-version header, when they are in that read).
_ANTHROPIC_BYTES = re.compile(
    rb"\A[!-~]{1,16} /v1/messages(?:[/?# ]|\Z)|\nanthropic-version[ \t]*:", re.IGNORECASE
)
_SNIFF_BYTES = 16 * 1024

_PARSER_MESSAGES: tuple[tuple[type[HttpProcessingError], str], ...] = (
    (BadHttpMethod, "The request method is not a valid HTTP method."),
    (LineTooLong, "The request line or a header line is longer than Logorhythms accepts."),
    (BadStatusLine, "The request line is malformed; send METHOD /path HTTP/1.1."),
    (InvalidURLError, "The request target is not a valid path."),
)
_MALFORMED = (
    "The request is malformed or ambiguous (its headers, their number or size, or its body "
    "framing, such as Content-Length together with Transfer-Encoding); it was not processed."
)


def dialect_of(path: str, has_anthropic_version: bool) -> str:
    """Whose error shape a client expects: Anthropic's for its API or its SDK, else OpenAI's."""
    return "anthropic" if has_anthropic_version or path.startswith("/v1/messages") else "openai"


def _api_error(dialect: str, status: int, message: str) -> web.Response:
    if status >= 500:
        error_type = "api_error" if dialect == "anthropic" else "server_error"
    elif status == 404:
        error_type = "not_found_error" if dialect == "anthropic" else "invalid_request_error"
    else:
        error_type = "invalid_request_error"
    response = web.Response(
        status=status,
        body=error_body(dialect, message, error_type=error_type),
        content_type="application/json",
    )
    response.force_close()
    return response


def not_a_forward_proxy(dialect: str) -> web.Response:
    """The answer to ``CONNECT``, ``OPTIONS *`` and absolute-form targets (``GET http://...``)."""
    return _api_error(
        dialect,
        HTTPStatus.BAD_REQUEST,
        "Logorhythms is not a forward proxy: send requests to a path such as "
        "/v1/chat/completions (set it as your SDK's base URL).",
    )


class ApiRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its own answers in the API's shape."""

    __slots__ = ("_refused_dialect", "_stats")

    def __init__(self, manager: web.Server, *, stats: GuardStats, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._stats = stats
        self._refused_dialect = "openai"

    def data_received(self, data: bytes) -> None:
        queued = len(self._messages)
        super().data_received(data)
        # The parser refused what it was fed (queued as an _ErrInfo): remember whose client
        # this looks like, for the answer; the bytes themselves are not kept.
        if len(self._messages) > queued and isinstance(self._messages[-1][0], _ErrInfo):
            sniff = data[:_SNIFF_BYTES]
            self._refused_dialect = (
                "anthropic" if _ANTHROPIC_BYTES.search(sniff) is not None else "openai"
            )

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request the parser refused, or to a handler that failed."""
        if isinstance(exc, HttpProcessingError):
            # Refused before any handler: one DEBUG line, never the request's bytes.
            self._stats.rejected_malformed += 1
            HTTP_SERVER_LOG.debug(
                "refused a malformed request from %s: %s (HTTP %s)",
                request.remote,
                type(exc).__name__,
                status,
            )
            text = next((m for kind, m in _PARSER_MESSAGES if isinstance(exc, kind)), _MALFORMED)
            dialect = self._refused_dialect
        else:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            text = (
                "Logorhythms timed out handling this request; try again."
                if status == HTTPStatus.GATEWAY_TIMEOUT
                else "Logorhythms could not handle this request (an internal error, logged); "
                "try again."
            )
            dialect = dialect_of(request.path, "anthropic-version" in request.headers)
        if request.writer.output_size > 0:
            # Part of a response went out already: the connection can only be cut.
            raise ConnectionError("a response was already under way; closing the connection")
        return _api_error(dialect, status, text)

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException):
            # aiohttp's own refusal (no route matched: CONNECT, OPTIONS *, authority-form...).
            resp = self._http_exception(request, resp)
            # CONNECT's "body" is the tunnel, which never ends: close right after answering.
            self._lingering_time = 0.0
        elif resp.status == HTTPStatus.REQUEST_TIMEOUT:
            # We gave up waiting for this request's body: do not wait (aiohttp's lingering
            # close) up to 10 s more for the rest of it before closing.
            self._lingering_time = 0.0
        return await super().finish_response(request, resp, start_time)

    def _http_exception(self, request: BaseRequest, exc: web.HTTPException) -> web.Response:
        dialect = dialect_of(request.path, "anthropic-version" in request.headers)
        if request.method == "CONNECT" or not request.raw_path.startswith("/"):
            return not_a_forward_proxy(dialect)
        else:
            status = HTTPStatus(exc.status)
            text = f"{status.phrase}."
        response = _api_error(dialect, status, text)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response


class ApiServer(web.Server):
    """aiohttp's server (the protocol factory), building ``ApiRequestHandler``s."""

    def __init__(self, *args: Any, stats: GuardStats, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stats = stats

    def __call__(self) -> RequestHandler:
        return ApiRequestHandler(self, stats=self._stats, loop=self._loop, **self._kwargs)


class ApiAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are handled by ``ApiRequestHandler``."""

    __slots__ = ("_stats",)

    def __init__(self, app: web.Application, *, stats: GuardStats, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._stats = stats

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return ApiServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            stats=self._stats,
            **server._kwargs,
        )
