"""Read-only SQL over HTTP, served by the process that owns the embedded ClickHouse.

An embedded (chdb) directory can be opened by one process at a time, and the loader holds it, so
the loader answers analysts' queries too. Every query runs with ClickHouse's own ``readonly=2``:
the engine itself refuses writes, whatever the statement looks like.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

from aiohttp import web

from consumers.clickhouse.client import ClickHouse, ClickHouseError
from consumers.clickhouse.sqlclient import DEFAULT_FORMAT, READONLY_CODE

log = logging.getLogger(__name__)

CLICKHOUSE = web.AppKey("clickhouse", ClickHouse)
_FORMAT = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def create_sql_app(clickhouse: ClickHouse) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[CLICKHOUSE] = clickhouse
    app.router.add_post("/sql", _query)
    app.router.add_get("/healthz", _healthz)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _query(request: web.Request) -> web.Response:
    sql = (await request.text()).strip()
    fmt = request.query.get("format", DEFAULT_FORMAT)
    if not sql:
        return web.Response(status=400, text="empty query: send the SQL as the request body\n")
    if not _FORMAT.match(fmt):
        return web.Response(status=400, text=f"{fmt!r} is not a ClickHouse output format name\n")
    try:
        result = await request.app[CLICKHOUSE].raw(sql, fmt=fmt, readonly=True)
    except ClickHouseError as exc:
        if exc.code == READONLY_CODE:
            return web.Response(
                status=403,
                text="refused: this SQL endpoint is read-only (SELECT, SHOW, DESCRIBE, EXPLAIN, "
                "WITH ...). Schema changes happen through the loader's migrations.\n",
            )
        return web.Response(status=400, text=f"{exc}\n")
    return web.Response(body=result, content_type="text/plain", charset="utf-8")


async def serve_sql(clickhouse: ClickHouse, host: str, port: int) -> AsyncIterator[None]:
    """Serve the SQL endpoint for as long as the generator is suspended."""
    runner = web.AppRunner(create_sql_app(clickhouse), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("read-only SQL on http://%s:%d/sql", host, port)
        yield
    finally:
        await runner.cleanup()
