"""@clickhouse/client, ClickHouse's official Node.js client, unchanged, against the endpoint."""

from __future__ import annotations

import orjson

from tests.integration.sqlclients.conftest import NODE_DIR, Endpoint, require, run_tool, tool


async def test_official_node_client(guarded_endpoint: Endpoint) -> None:
    require(NODE_DIR / "node_modules" / "@clickhouse" / "client", "@clickhouse/client (npm)")
    assert guarded_endpoint.user is not None
    assert guarded_endpoint.password is not None
    out = await run_tool(
        tool("node"), "query.mjs", guarded_endpoint.url, guarded_endpoint.user,
        guarded_endpoint.password, cwd=NODE_DIR,
    )  # fmt: skip
    got = orjson.loads(out)
    assert got["ping"] == {"ok": True}
    assert got["params"] == {"ok": [{"answer": 42, "echo": "it's"}]}
    assert got["stream"] == {"ok": {"rows": 200_000, "sum": 200_000 * 199_999 // 2}}
    assert "exchanges" in got["tables"]["ok"]
    # Errors reach the client as its own ClickHouseError, with ClickHouse's code and type.
    assert got["unknown_table"]["error"]["code"] == "60"
    assert got["unknown_table"]["error"]["type"] == "UNKNOWN_TABLE"
    assert got["file_function"]["error"]["code"] == "497"
    assert "root:" not in got["file_function"]["error"]["message"]


async def test_wrong_password_is_the_clients_auth_error(guarded_endpoint: Endpoint) -> None:
    assert guarded_endpoint.user is not None
    out = await run_tool(
        tool("node"), "query.mjs", guarded_endpoint.url, guarded_endpoint.user, "wrong",
        cwd=NODE_DIR,
    )  # fmt: skip
    got = orjson.loads(out)
    assert got["params"]["error"]["type"] == "AUTHENTICATION_FAILED"
    assert got["params"]["error"]["code"] == "516"
