"""Migrations: versioned, applied once, and safe to re-run after a crash half-way through."""

from __future__ import annotations

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import load_migrations, migrate


async def test_migrations_apply_once_and_every_statement_is_idempotent(
    clickhouse: ClickHouse,
) -> None:
    migrations = load_migrations()
    assert await migrate(clickhouse) == migrations[-1].version
    assert await migrate(clickhouse) == migrations[-1].version  # a restart: nothing to do
    rows = await clickhouse.rows("SELECT version, name FROM schema_migrations ORDER BY version")
    assert rows == [(m.version, m.name) for m in migrations]

    # A loader killed after a migration's statements but before its version row re-runs them.
    for migration in migrations:
        for statement in migration.statements:
            await clickhouse.command(statement)
    indexes = await clickhouse.rows(
        "SELECT table, name FROM system.data_skipping_indices "
        "WHERE database = currentDatabase() ORDER BY table, name"
    )
    assert ("exchanges", "idx_received_at") in indexes
    assert len(indexes) == len(set(indexes))
