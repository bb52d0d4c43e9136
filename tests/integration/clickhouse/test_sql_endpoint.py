"""The analysts' SQL endpoint over real HTTP on the embedded engine: framing, headers, auth.

No Kafka here: the endpoint is served on its own (the attack corpus in
tests/integration/security/test_sql_endpoint_attacks.py runs it inside a loading loader).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest

from consumers.clickhouse.analyst import AnalystEngine
from consumers.clickhouse.compressedblock import HEADER, read_blocks
from consumers.clickhouse.sqlservice import create_sql_app
from consumers.settings import Secret, SqlSettings, embedded_path
from tests.integration.conftest import serve

PASSWORD = "s3cret-analyst-password"

Endpoint = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def endpoint(clickhouse_url: str) -> Endpoint:
    """Serve the endpoint on a free loopback port with the given settings; yields its URL."""

    @asynccontextmanager
    async def start(**overrides: object) -> AsyncIterator[str]:
        settings = SqlSettings(**overrides)  # type: ignore[arg-type]
        engine = AnalystEngine(str(embedded_path(clickhouse_url)), settings.limits)
        await engine.start()
        runner, url = await serve(create_sql_app(engine, settings))
        try:
            yield url
        finally:
            await runner.cleanup()
            await engine.stop()

    return start


async def _post(
    url: str, query: str, *, params: dict[str, str] | None = None, **kwargs: object
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession(auto_decompress=kwargs.pop("auto_decompress", True)) as session,  # type: ignore[arg-type]
        session.post(f"{url}/", data=query, params=params or {}, **kwargs) as response,  # type: ignore[arg-type]
    ):
        return response.status, dict(response.headers), await response.read()


def _block_sizes(body: bytes) -> list[int]:
    sizes, position = [], 0
    while position < len(body):
        _, size, raw_size = HEADER.unpack_from(body, position + 16)
        sizes.append(raw_size)
        position += 16 + size
    return sizes


async def test_a_syntax_error_names_the_analysts_query_not_the_parse_check(
    endpoint: Endpoint,
) -> None:
    async with endpoint() as url:
        status, headers, body = await _post(url, "SELEC 1")
        second_status, _, second = await _post(url, "SELECT 'it''s' FROM")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")
    text = body.decode()
    assert "Syntax error" in text
    assert text.rstrip().endswith("(SYNTAX_ERROR) (version 26.9.2.1)")
    assert second_status == 400
    assert "formatQuery" not in text
    assert "formatQuery" not in second.decode()


async def test_compress_1_answers_in_checksummed_lz4_blocks(endpoint: Endpoint) -> None:
    expected = "".join(f"{n}\n" for n in range(400_000)).encode()  # ~2.6 MB: three blocks
    async with endpoint() as url:
        status, headers, body = await _post(
            url, "SELECT number FROM numbers(400000)", params={"compress": "1"}
        )
    assert status == 200, body
    assert headers["X-ClickHouse-Format"] == "TabSeparated"
    assert len(body) < len(expected)
    assert read_blocks(body) == expected  # every checksum verified on the way
    sizes = _block_sizes(body)
    assert len(sizes) == 3
    assert sizes[:2] == [1024 * 1024] * 2


async def test_compress_1_sits_inside_the_http_encoding(endpoint: Endpoint) -> None:
    async with endpoint() as url:
        status, headers, body = await _post(
            url,
            "SELECT number FROM numbers(1000)",
            params={"compress": "1", "enable_http_compression": "1"},
            headers={"Accept-Encoding": "gzip"},
        )
    assert status == 200, body
    assert headers["Content-Encoding"] == "gzip"  # aiohttp undid it; the blocks remain
    assert read_blocks(body) == "".join(f"{n}\n" for n in range(1000)).encode()


async def test_compress_1_on_an_empty_result_is_an_empty_body(endpoint: Endpoint) -> None:
    async with endpoint() as url:
        status, _, body = await _post(url, "SELECT 1 WHERE 0", params={"compress": "1"})
    assert (status, body) == (200, b"")


async def test_format_and_database_headers_win_over_parameters(endpoint: Endpoint) -> None:
    async with endpoint() as url:
        status, headers, body = await _post(
            url,
            "SELECT currentDatabase() AS db",
            params={"default_format": "CSV", "database": "default"},
            headers={
                "X-ClickHouse-Format": "JSONEachRow",
                "X-ClickHouse-Database": "information_schema",
            },
        )
    assert status == 200, body
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert orjson.loads(body) == {"db": "information_schema"}


async def test_summary_reports_rows_read_and_returned(endpoint: Endpoint) -> None:
    query = "SELECT number FROM numbers(1000000) WHERE number % 100 = 0"
    async with endpoint() as url:
        # A result built whole (JSON is not streamed): the engine's final figures.
        status, headers, body = await _post(url, query, params={"default_format": "JSON"})
        assert status == 200, body
        summary = orjson.loads(headers["X-ClickHouse-Summary"])
        assert summary["read_rows"] == "1000000"
        assert summary["read_bytes"] == "8000000"
        assert summary["result_rows"] == "10000"
        assert summary["written_rows"] == "0"
        assert int(summary["elapsed_ns"]) > 0
        # Streamed and under the header buffer: every result row is counted; the rows read
        # are what the engine's reading threads had reported by the end (at most all of them).
        status, headers, body = await _post(url, query)
        assert status == 200, body
        streamed = orjson.loads(headers["X-ClickHouse-Summary"])
        assert streamed["result_rows"] == "10000"
        assert 0 < int(streamed["read_rows"]) <= 1_000_000
        # Larger than the header buffer: what was read when the headers went out.
        status, headers, _ = await _post(url, "SELECT number FROM numbers(3000000)")
        assert status == 200
        partial = orjson.loads(headers["X-ClickHouse-Summary"])
        assert 0 < int(partial["result_rows"]) < 3_000_000


async def test_query_parameters_bind_and_are_judged_bound(endpoint: Endpoint) -> None:
    async with endpoint() as url:
        status, _, body = await _post(
            url, "SELECT {x:UInt8} + 1, {s:String}", params={"param_x": "41", "param_s": "a'b"}
        )
        assert (status, body) == (200, b"42\ta\\'b\n")
        names = {"param_db": "system", "param_t": "one"}
        status, _, body = await _post(
            url, "SELECT count() FROM {db:Identifier}.{t:Identifier}", params=names
        )
        assert (status, body) == (200, b"1\n")
        # A table named by a parameter is checked like one named in the text.
        names["param_t"] = "processes"
        status, headers, body = await _post(
            url, "SELECT * FROM {db:Identifier}.{t:Identifier}", params=names
        )
        assert status == 500, body  # a server's status for ACCESS_DENIED too
        assert headers["X-ClickHouse-Exception-Code"] == "497"


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        (_basic("analyst", "wrong"), {}),
        (_basic("someone", PASSWORD), {}),
        ({"X-ClickHouse-User": "analyst", "X-ClickHouse-Key": "wrong"}, {}),
        ({}, {"user": "analyst", "password": "wrong"}),
        ({}, {"password": PASSWORD}),  # right password, default user: not ours
        ({"Authorization": "Basic !!!not-base64"}, {}),
    ],
)
async def test_missing_or_wrong_credentials_get_authentication_failed(
    endpoint: Endpoint, headers: dict[str, str], params: dict[str, str]
) -> None:
    async with endpoint(user="analyst", password=Secret(PASSWORD)) as url:
        status, response_headers, body = await _post(
            url, "SELECT 1", params=params, headers=headers
        )
    text = body.decode()
    assert status == 403, text
    assert response_headers["X-ClickHouse-Exception-Code"] == "516"
    assert text.startswith("Code: 516. DB::Exception: "), text
    assert text.rstrip().endswith("(AUTHENTICATION_FAILED) (version 26.9.2.1)"), text
    assert PASSWORD not in text


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        (_basic("analyst", PASSWORD), {}),
        ({"X-ClickHouse-User": "analyst", "X-ClickHouse-Key": PASSWORD}, {}),
        ({}, {"user": "analyst", "password": PASSWORD}),
    ],
)
async def test_right_credentials_by_each_means_are_accepted(
    endpoint: Endpoint, headers: dict[str, str], params: dict[str, str]
) -> None:
    async with endpoint(user="analyst", password=Secret(PASSWORD)) as url:
        status, _, body = await _post(url, "SELECT 41 + 1", params=params, headers=headers)
        assert (status, body) == (200, b"42\n")
        # Liveness needs no credentials (load balancers, `logorhythms up`), queries do.
        async with aiohttp.ClientSession() as session, session.get(f"{url}/ping") as response:
            assert (response.status, await response.text()) == (200, "Ok.\n")


REPO = Path(__file__).resolve().parents[3]


async def _cli(*args: str, env: dict[str, str], timeout_s: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deploy.cli", *args, env={**os.environ, **env}, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_loader_refuses_a_non_loopback_bind_without_a_password(tmp_path: Path) -> None:
    code, _, err = await _cli(
        "load-clickhouse",
        env={
            "LOGORHYTHMS_SQL_HOST": "0.0.0.0",
            "LOGORHYTHMS_SQL_PASSWORD": "",
            "CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        },
    )
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and " INFO " not in line]
    assert lines == [
        "logorhythms load-clickhouse: configuration error: LOGORHYTHMS_SQL_HOST=0.0.0.0 is "
        "reachable from "
        "other machines: set LOGORHYTHMS_SQL_PASSWORD (and LOGORHYTHMS_SQL_USER) or bind to "
        "127.0.0.1"
    ], err
    assert not (tmp_path / "ch").exists()  # refused before opening anything


async def test_logorhythms_sql_sends_the_configured_credentials(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    env = {
        "CLICKHOUSE_URL": f"chdb://{tmp_path / 'unused'}",
        "LOGORHYTHMS_SQL_USER": "analyst",
    }
    async with endpoint(user="analyst", password=Secret(PASSWORD)) as url:
        env["LOGORHYTHMS_SQL_URL"] = url
        code, out, err = await _cli(
            "sql", "SELECT 6 * 7 AS answer", "--format", "TSV",
            env={**env, "LOGORHYTHMS_SQL_PASSWORD": PASSWORD},
        )  # fmt: skip
        assert (code, out, err) == (0, "42\n", "")
        code, out, err = await _cli(
            "sql", "SELECT 1", env={**env, "LOGORHYTHMS_SQL_PASSWORD": "wrong"}
        )
        assert code == 1
        assert "Code: 516." in err
        assert "(AUTHENTICATION_FAILED)" in err
        assert out == ""
    # A refused password never falls back to opening the directory itself.
    assert not (tmp_path / "unused").exists()
