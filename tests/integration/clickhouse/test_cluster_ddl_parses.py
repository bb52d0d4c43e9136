"""Every statement of the production DDL parses in the ClickHouse engine we ship with.

The cluster cannot run here (Keeper, shards), but ClickHouse's own parser (formatQuery) catches
syntax errors in any statement, CREATE USER and GRANT ... ON CLUSTER included."""

from __future__ import annotations

from consumers.clickhouse.client import ClickHouse
from tests.unit.consumers.clickhouse.test_cluster_ddl import CLUSTER_DDL, _statements


async def test_every_cluster_statement_parses(clickhouse: ClickHouse) -> None:
    statements = _statements(CLUSTER_DDL.read_text(encoding="utf-8"))
    assert len(statements) > 15
    for statement in statements:
        rows = await clickhouse.rows("SELECT formatQuery({q:String})", {"q": statement})
        assert rows[0][0].split()[0] in {"CREATE", "INSERT", "GRANT", "ALTER"}, statement
