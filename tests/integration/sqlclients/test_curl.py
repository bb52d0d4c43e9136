"""curl, the way ClickHouse's documentation shows its HTTP interface."""

from __future__ import annotations

from tests.integration.sqlclients.conftest import Endpoint, run_tool, tool


async def _curl(*args: str) -> str:
    return await run_tool(tool("curl"), "--silent", "--show-error", *args)


async def test_the_documented_forms(endpoint: Endpoint) -> None:
    url = endpoint.url
    assert await _curl(f"{url}/ping") == "Ok.\n"
    assert await _curl(f"{url}/") == "Ok.\n"
    assert await _curl(f"{url}/?query=SELECT+1") == "1\n"
    # The query in the body, from standard input (`echo 'SELECT 1' | curl URL --data-binary @-`).
    assert await _curl(f"{url}/", "--data-binary", "SELECT 1 + 1") == "2\n"
    # Query parameter first, body after it: ClickHouse joins the two.
    assert await _curl(f"{url}/?query=SELECT", "--data-binary", " 3") == "3\n"
    assert (
        await _curl(
            f"{url}/?default_format=JSONEachRow&param_n=41", "-d", "SELECT {n:UInt8} + 1 AS a"
        )
        == '{"a":42}\n'
    )
    counted = await _curl(f"{url}/?query=SELECT+count()+FROM+exchanges+FINAL+FORMAT+TSV")
    assert int(counted) >= len(endpoint.request_ids)


async def test_errors_and_headers(endpoint: Endpoint) -> None:
    out = await _curl("--include", f"{endpoint.url}/?query=SELECT+*+FROM+no_such_table")
    head, _, body = out.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 404")
    assert "X-ClickHouse-Exception-Code: 60" in head
    assert body.startswith("Code: 60. DB::Exception: ")
    out = await _curl("--include", f"{endpoint.url}/?query=SELECT+1+AS+x&query_id=q-curl-1")
    head = out.partition("\r\n\r\n")[0]
    assert "X-ClickHouse-Query-Id: q-curl-1" in head
    assert "X-ClickHouse-Format: TabSeparated" in head


async def test_compressed_when_asked(endpoint: Endpoint) -> None:
    query = "SELECT+number+FROM+numbers(5)"
    out = await _curl(
        "--include", "--compressed", f"{endpoint.url}/?enable_http_compression=1&query={query}"
    )
    head, _, body = out.partition("\r\n\r\n")
    assert "Content-Encoding: " in head  # one of those curl --compressed offers
    assert body == "0\n1\n2\n3\n4\n"
    plain = await _curl("--include", "--compressed", f"{endpoint.url}/?query={query}")
    assert "Content-Encoding" not in plain  # only when the client enables it, as ClickHouse


async def test_password_with_curl(guarded_endpoint: Endpoint) -> None:
    url, user, password = guarded_endpoint.url, guarded_endpoint.user, guarded_endpoint.password
    assert user is not None
    assert password is not None
    refused = await _curl("--include", f"{url}/?query=SELECT+1")
    assert "X-ClickHouse-Exception-Code: 516" in refused  # as a server answers
    assert await _curl("-u", f"{user}:{password}", f"{url}/?query=SELECT+1") == "1\n"
    assert (
        await _curl("-H", f"X-ClickHouse-User: {user}", "-H", f"X-ClickHouse-Key: {password}",
                    f"{url}/?query=SELECT+2")
        == "2\n"
    )  # fmt: skip
    wrong = await _curl("--include", "-u", f"{user}:wrong", f"{url}/?query=SELECT+1")
    assert "X-ClickHouse-Exception-Code: 516" in wrong
