"""Every statement of the production DDL parses in the ClickHouse engine we ship with.

The cluster cannot run here (Keeper, shards), but ClickHouse's own parser (formatQuery) catches
syntax errors in any statement, CREATE USER and GRANT ... ON CLUSTER included."""

from __future__ import annotations

from consumers.clickhouse.client import ClickHouse
from tests.unit.consumers.clickhouse.test_cluster_ddl import ANALYST_DDL, CLUSTER_DDL, _statements


async def test_every_cluster_statement_parses(clickhouse: ClickHouse) -> None:
    statements = _statements(CLUSTER_DDL.read_text(encoding="utf-8"))
    assert len(statements) > 15
    for statement in statements:
        rows = await clickhouse.rows("SELECT formatQuery({q:String})", {"q": statement})
        assert rows[0][0].split()[0] in {"CREATE", "INSERT", "GRANT", "ALTER"}, statement


async def test_every_analyst_access_statement_parses(clickhouse: ClickHouse) -> None:
    """Parsed only: chdb's single user cannot create users or roles, so grants are not executed."""
    statements = _statements(ANALYST_DDL.read_text(encoding="utf-8"))
    assert len(statements) > 40
    for statement in statements:
        rows = await clickhouse.rows("SELECT formatQuery({q:String})", {"q": statement})
        formatted = rows[0][0]
        assert formatted.split()[0] in {"CREATE", "GRANT", "REVOKE", "ALTER"}, statement
        # What the parser kept is what was written (a typo'd clause would be an error above;
        # a dropped one would show here).
        assert " ".join(formatted.replace("`", "'").split()).count("analyst") == " ".join(
            statement.split()
        ).count("analyst"), statement
