"""The analysts' SQL endpoint: ClickHouse's HTTP interface over the embedded engine.

An embedded (chdb) directory can be opened by one process at a time and the loader holds it, so
the loader serves analysts too. Tools that speak ClickHouse's HTTP interface (clickhouse-connect,
@clickhouse/client, JDBC, curl, Grafana) connect unchanged: ``GET``/``POST /``, ``/ping``,
``/healthz``; the SQL console page is at ``/play``; ``POST /sql?format=`` stays for older
``logorhythms sql`` callers.

What a query may do is decided in ``sqlpolicy`` and enforced by a readonly session of its own
(``analyst``). This module adds what is about the HTTP exposure: credentials, Host and Origin
checks against DNS rebinding and browser cross-origin requests, compression, streaming.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import lz4.frame
import orjson
from aiohttp import web
from backports import zstd

from consumers.clickhouse import sqlhttp
from consumers.clickhouse.analyst import AnalystEngine, AnalystQuery, EngineError
from consumers.clickhouse.compressedblock import BlockWriter
from consumers.clickhouse.sqlconsole import add_console_routes
from consumers.clickhouse.sqlpolicy import QueryRefusedError
from consumers.settings import SqlSettings

log = logging.getLogger(__name__)

ENGINE = web.AppKey("engine", AnalystEngine)
SETTINGS = web.AppKey("settings", SqlSettings)
EXCEPTION_MARKER = b"__exception__"
SERVER_NAME = "logorhythms"
_TIMEZONE = "UTC"
HEALTH_TIMEOUT_S = 5.0
# Output read before the headers are sent (the server's DBMS_DEFAULT_BUFFER_SIZE).
HEADER_BUFFER_BYTES = 1024 * 1024


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class _Lz4Frame:
    def __init__(self) -> None:
        self._c = lz4.frame.LZ4FrameCompressor()
        self._started = False

    def compress(self, data: bytes) -> bytes:
        head = b""
        if not self._started:
            head, self._started = self._c.begin(), True
        return bytes(head + self._c.compress(data))

    def flush(self) -> bytes:
        head = b"" if self._started else self._c.begin()
        self._started = True
        return bytes(head + self._c.flush())


_ENCODERS: dict[str, Callable[[], _Compressor]] = {
    "gzip": lambda: zlib.compressobj(3, zlib.DEFLATED, 16 + zlib.MAX_WBITS),
    "deflate": lambda: zlib.compressobj(3),
    "zstd": lambda: zstd.ZstdCompressor(),
    "lz4": _Lz4Frame,
}
ENCODINGS = frozenset(_ENCODERS)


@dataclass(frozen=True, slots=True)
class _Refusal:
    code: int
    name: str
    text: str


def create_sql_app(engine: AnalystEngine, settings: SqlSettings) -> web.Application:
    app = web.Application(client_max_size=settings.max_query_bytes, middlewares=[_guard_exposure])
    app[ENGINE] = engine
    app[SETTINGS] = settings
    app.router.add_get("/ping", _ping)
    app.router.add_get("/healthz", _healthz)
    app.router.add_route("GET", "/", _root)
    app.router.add_route("POST", "/", _root)
    app.router.add_post("/sql", _legacy_sql)
    add_console_routes(app)
    return app


def _refusal(code: int, name: str, message: str) -> _Refusal:
    return _Refusal(code, name, sqlhttp.exception_text(code, name, message))


def _error_response(refusal: _Refusal, query_id: str | None = None) -> web.Response:
    headers = {
        "X-ClickHouse-Exception-Code": str(refusal.code),
        "X-ClickHouse-Server-Display-Name": SERVER_NAME,
    }
    if query_id:
        headers["X-ClickHouse-Query-Id"] = query_id
    if refusal.code == 194:
        headers["WWW-Authenticate"] = 'Basic realm="ClickHouse server HTTP API"'
    return web.Response(
        status=sqlhttp.http_status(refusal.code),
        text=refusal.text,
        content_type="text/plain",
        charset="utf-8",
        headers=headers,
    )


@web.middleware
async def _guard_exposure(
    request: web.Request, handler: Callable[[web.Request], object]
) -> web.StreamResponse:
    """Only this endpoint's own names, no browser cross-origin requests, then credentials."""
    settings = request.app[SETTINGS]
    host = (request.host or "").rsplit(":", 1)[0].strip("[]").lower()
    if host not in settings.allowed_host_names():
        return _error_response(
            _refusal(
                516,
                "AUTHENTICATION_FAILED",
                f"Host {host!r} is not a name of this endpoint (DNS rebinding?). Add it to "
                "LOGORHYTHMS_SQL_ALLOWED_HOSTS if it is yours",
            )
        )
    origin = request.headers.get("Origin")
    own_origins = settings.own_origins()
    fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
    if (origin is not None and origin.lower() not in own_origins) or fetch_site in {
        "cross-site",
        "same-site",
    }:
        return _error_response(
            _refusal(
                516,
                "AUTHENTICATION_FAILED",
                "cross-origin requests from a browser are refused; use the console at /play "
                "or a ClickHouse client",
            )
        )
    # /ping, /healthz and the console's static files carry no data: like a server's /play page,
    # the console asks for the user and password itself and sends them with each query.
    public = request.path in {"/ping", "/healthz"} or request.path.startswith("/play")
    if not public and settings.password is not None:
        try:
            given = sqlhttp.credentials(request.query, request.headers)
        except sqlhttp.RequestError as exc:
            return _error_response(_refusal(exc.code, exc.name, str(exc)))
        # No credentials means the default user with an empty password, as on a server.
        user_ok = secrets.compare_digest((given.user or "default").encode(), settings.user.encode())
        password_ok = settings.password.matches(given.password or "")
        if not (user_ok and password_ok):
            return _error_response(
                _refusal(
                    516,
                    "AUTHENTICATION_FAILED",
                    f"{given.user or 'default'}: Authentication failed: password is incorrect, "
                    "or there is no user with such name",
                )
            )
    result = await handler(request)  # type: ignore[misc]
    assert isinstance(result, web.StreamResponse)
    return result


async def _ping(request: web.Request) -> web.Response:
    return web.Response(text="Ok.\n")


async def _healthz(request: web.Request) -> web.Response:
    ok = await request.app[ENGINE].healthy(HEALTH_TIMEOUT_S)
    body = {"status": "ok" if ok else "engine not answering"}
    return web.json_response(body, status=200 if ok else 503)


async def _root(request: web.Request) -> web.StreamResponse:
    body = await request.text() if request.method == "POST" else ""
    if request.method == "GET" and "query" not in request.query:
        return web.Response(text="Ok.\n")
    return await _run(request, request.query, body)


async def _legacy_sql(request: web.Request) -> web.StreamResponse:
    """``POST /sql?format=F`` with the query as the body (``logorhythms sql`` before this API)."""
    params = {"default_format": request.query.get("format", "TabSeparated")}
    return await _run(request, params, await request.text())


async def _run(request: web.Request, query: object, body: str) -> web.StreamResponse:
    engine = request.app[ENGINE]
    params = dict(query)  # type: ignore[call-overload]
    query_id = params.get("query_id") or str(uuid.uuid4())
    try:
        parsed = sqlhttp.parse_request(params, body, request.headers)
        settings = sqlhttp.check_settings(
            parsed.settings, engine.limits.ceilings(), engine.setting_types
        )
        prepared = await engine.prepare(parsed)
    except (sqlhttp.RequestError, QueryRefusedError) as exc:
        return _error_response(_refusal(exc.code, exc.name, str(exc)), query_id)
    except EngineError as exc:
        return _error_response(_Refusal(exc.code, exc.name, exc.text), query_id)
    encoding = None
    if parsed.http_compression:
        encoding = sqlhttp.choose_encoding(request.headers.get("Accept-Encoding", ""), ENCODINGS)
    try:
        running = await engine.open(parsed, prepared, settings)
    except EngineError as exc:
        return _error_response(_Refusal(exc.code, exc.name, exc.text), query_id)
    try:
        return await _stream(
            request, running, prepared.output_format, query_id, encoding, parsed.native_compression
        )
    finally:
        await running.close()


async def _stream(
    request: web.Request,
    running: AnalystQuery,
    fmt: str,
    query_id: str,
    encoding: str | None,
    native_compression: bool,
) -> web.StreamResponse:
    # The first output decides the status: an error before any output is a proper error reply.
    # Like the server's response buffer, up to HEADER_BUFFER_BYTES are read before the headers
    # go out, so a result that fits has a complete X-ClickHouse-Summary.
    head: list[bytes] = []
    buffered = 0
    chunk: bytes | None = b""
    try:
        while buffered < HEADER_BUFFER_BYTES:
            chunk = await running.next_chunk()
            if chunk is None:
                break
            head.append(chunk)
            buffered += len(chunk)
    except EngineError as exc:
        return _error_response(_Refusal(exc.code, exc.name, exc.text), query_id)
    response = web.StreamResponse(
        headers={
            "Content-Type": sqlhttp.content_type(fmt),
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": _TIMEZONE,
            "X-ClickHouse-Server-Display-Name": SERVER_NAME,
            "X-ClickHouse-Summary": orjson.dumps(running.progress.summary()).decode(),
        }
    )
    compressor = _output_encoder(encoding, native_compression)
    if encoding:
        response.headers["Content-Encoding"] = encoding
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for piece in head:
            await response.write(compressor.compress(piece) if compressor else piece)
        head.clear()
        while chunk is not None:
            chunk = await running.next_chunk()
            if chunk is not None:
                await response.write(compressor.compress(chunk) if compressor else chunk)
    except EngineError as exc:
        # Headers are gone: ClickHouse writes a marker and the exception, then breaks the
        # chunked encoding so the client cannot mistake the cut result for a whole one.
        tail = EXCEPTION_MARKER + b"\r\n" + exc.text.encode()
        await response.write(compressor.compress(tail) + compressor.flush() if compressor else tail)
        if request.transport is not None:
            request.transport.close()
        return response
    if compressor:
        await response.write(compressor.flush())
    await response.write_eof()
    return response


class _Layered:
    """ClickHouse's compressed blocks (``compress=1``) inside an HTTP encoding, as on a server."""

    def __init__(self, inner: _Compressor, outer: _Compressor) -> None:
        self._inner = inner
        self._outer = outer

    def compress(self, data: bytes) -> bytes:
        blocks = self._inner.compress(data)
        return self._outer.compress(blocks) if blocks else b""

    def flush(self) -> bytes:
        return self._outer.compress(self._inner.flush()) + self._outer.flush()


def _output_encoder(encoding: str | None, native_compression: bool) -> _Compressor | None:
    http = _ENCODERS[encoding]() if encoding else None
    if not native_compression:
        return http
    blocks = BlockWriter()
    return _Layered(blocks, http) if http is not None else blocks


async def serve_sql(engine: AnalystEngine, settings: SqlSettings) -> AsyncIterator[None]:
    """Serve the SQL endpoint for as long as the generator is suspended."""
    settings.check_exposure()
    await engine.start()
    runner = web.AppRunner(create_sql_app(engine, settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        log.info(
            "analysts' SQL (ClickHouse HTTP interface) on http://%s:%d/",
            settings.host,
            settings.port,
        )
        yield
    finally:
        await runner.cleanup()
        await engine.stop()
        await asyncio.sleep(0)
