"""ClickHouse's JDBC driver (com.clickhouse:jdbc-v2, what DBeaver and JVM tools load), unchanged
and with its default settings, against the endpoint."""

from __future__ import annotations

from tests.integration.sqlclients.conftest import (
    JDBC_JARS,
    JDBC_SOURCE,
    Endpoint,
    require,
    run_tool,
    tool,
)


async def _jdbc(endpoint: Endpoint, *args: str, password: str | None = None) -> list[list[str]]:
    require(JDBC_JARS / ".installed", "The ClickHouse JDBC driver")
    assert endpoint.user is not None
    assert endpoint.password is not None
    out = await run_tool(
        tool("java"), "-cp", f"{JDBC_JARS}/*", str(JDBC_SOURCE),
        f"jdbc:clickhouse://127.0.0.1:{endpoint.port}/default", endpoint.user,
        password if password is not None else endpoint.password, *args,
    )  # fmt: skip
    return [line.split("\t") for line in out.splitlines()]


async def test_queries_and_metadata(guarded_endpoint: Endpoint) -> None:
    ids = ",".join(f"'{i}'" for i in guarded_endpoint.request_ids)
    rows = await _jdbc(
        guarded_endpoint, "query",
        "SELECT request_id, model_requested, status, response_text FROM exchanges FINAL "  # noqa: S608
        f"WHERE request_id IN ({ids}) ORDER BY request_id",
    )  # fmt: skip
    assert rows[0] == ["request_id", "model_requested", "status", "response_text"]
    assert [r[0] for r in rows[1:]] == sorted(guarded_endpoint.request_ids)
    assert {(r[1], r[2]) for r in rows[1:]} == {("m", "200")}
    # What DBeaver's navigator asks for: the tables, through DatabaseMetaData.
    tables = await _jdbc(guarded_endpoint, "tables")
    header = tables[0]
    names = {row[header.index("TABLE_NAME")] for row in tables[1:]}
    assert {"exchanges", "requests_raw", "chunks_raw", "completions_raw"} <= names


async def test_errors_are_sql_exceptions(guarded_endpoint: Endpoint) -> None:
    refused = await _jdbc(
        guarded_endpoint, "query", "SELECT * FROM file('/etc/passwd', 'LineAsString')"
    )
    assert refused[0][0].startswith("SQLException: Code: 497.")
    wrong = await _jdbc(guarded_endpoint, "query", "SELECT 1", password="wrong")
    assert wrong[0][0].startswith("SQLException:")
    assert "516" in wrong[0][0] or "AUTHENTICATION_FAILED" in wrong[0][0]
