"""`logorhythms sql`: run one read-only query against the configured ClickHouse.

Server DSNs are queried directly. An embedded directory is locked by the loader while it runs, so
the query goes to the loader's SQL endpoint; when no loader is running, the directory is opened
here instead.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.parse
import urllib.request

from consumers.settings import embedded_path, is_embedded

# Imports of clickhouse-connect and aiohttp are deferred: the common path is one small HTTP call,
# and the command should answer in a fraction of a second.

DEFAULT_FORMAT = "PrettyCompactMonoBlock"
READONLY_CODE = 164


class SqlClientError(Exception):
    retriable = False


def query(
    sql: str,
    *,
    clickhouse_url: str,
    sql_endpoint: str,
    fmt: str = DEFAULT_FORMAT,
    user: str = "default",
    password: str | None = None,
) -> bytes:
    if not is_embedded(clickhouse_url):
        return asyncio.run(_direct(sql, clickhouse_url, fmt))
    # The loader speaks ClickHouse's HTTP interface: the query is the body, the format a default
    # that a FORMAT clause in the query overrides.
    url = f"{sql_endpoint.rstrip('/')}/?{urllib.parse.urlencode({'default_format': fmt})}"
    headers = {"X-ClickHouse-User": user, "X-ClickHouse-Key": password} if password else {}
    request = urllib.request.Request(  # noqa: S310
        url, data=sql.encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        raise SqlClientError(exc.read().decode(errors="replace").strip()) from None
    except urllib.error.URLError:
        pass  # no loader is running: open the embedded directory ourselves
    from consumers.clickhouse.client import ClickHouseError

    try:
        return asyncio.run(_direct(sql, clickhouse_url, fmt))
    except ClickHouseError as exc:
        raise SqlClientError(
            f"{exc}\n(no loader answered at {sql_endpoint}, and the embedded ClickHouse at "
            f"{embedded_path(clickhouse_url)} could not be opened directly; is a loader starting?)"
        ) from None


async def _direct(sql: str, clickhouse_url: str, fmt: str) -> bytes:
    from consumers.clickhouse.client import ClickHouse, ClickHouseError

    async with ClickHouse(clickhouse_url) as clickhouse:
        try:
            return await clickhouse.raw(sql, fmt=fmt, readonly=True)
        except ClickHouseError as exc:
            if exc.code == READONLY_CODE:
                raise SqlClientError(
                    "refused: `logorhythms sql` is read-only (SELECT, SHOW, DESCRIBE, EXPLAIN)."
                ) from None
            raise SqlClientError(str(exc)) from None


def run(
    sql: str,
    *,
    clickhouse_url: str,
    sql_endpoint: str,
    fmt: str,
    user: str = "default",
    password: str | None = None,
) -> int:
    try:
        out = query(
            sql,
            clickhouse_url=clickhouse_url,
            sql_endpoint=sql_endpoint,
            fmt=fmt,
            user=user,
            password=password,
        )
    except SqlClientError as exc:
        print(f"logorhythms sql: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return 0
