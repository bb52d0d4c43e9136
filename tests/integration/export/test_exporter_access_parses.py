"""Every statement of deploy/clickhouse/exporter.sql parses in the engine we ship with (users and
roles cannot be created in chdb, so the grants are parsed, not executed)."""

from __future__ import annotations

from consumers.clickhouse.client import ClickHouse
from tests.unit.consumers.export.test_exporter_access import statements


async def test_every_exporter_statement_parses(clickhouse_url: str) -> None:
    found = statements()
    assert len(found) >= 10
    async with ClickHouse(clickhouse_url) as clickhouse:
        for statement in found:
            rows = await clickhouse.rows("SELECT formatQuery({q:String})", {"q": statement})
            formatted = " ".join(rows[0][0].replace("`", "").split())
            assert formatted.split()[0] in {"CREATE", "GRANT", "REVOKE", "ALTER"}, statement
            assert formatted.count("exporter") == statement.count("exporter"), statement
