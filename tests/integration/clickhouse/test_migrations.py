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


async def test_rows_loaded_before_0005_read_their_text_as_the_upstreams(
    clickhouse: ClickHouse,
) -> None:
    """Before 0005 response_text held the upstream's text: the new columns default to it there."""
    older = [m for m in load_migrations() if m.version < 5]
    for migration in older:
        for statement in migration.statements:
            await clickhouse.command(statement)
    await migrate_to(clickhouse, older[-1].version)
    await clickhouse.command(
        "INSERT INTO exchanges (request_id, received_at, completed_at, response_text, tool_calls, "
        "error_message) VALUES ('r1', now64(6), now64(6), 'Hello', '[{\"id\":\"c\"}]', 'Not Found')"
    )
    assert await migrate(clickhouse) == load_migrations()[-1].version
    rows = await clickhouse.rows(
        "SELECT response_text, upstream_response_text, upstream_tool_calls, provider_error_type, "
        "provider_error_code, provider_error_message FROM exchanges FINAL"
    )
    assert rows == [("Hello", "Hello", '[{"id":"c"}]', "", "", "")]


async def migrate_to(clickhouse: ClickHouse, version: int) -> None:
    """Record versions 1..``version`` as applied, as a loader of that version would have."""
    await clickhouse.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    for migration in load_migrations()[:version]:
        await clickhouse.command(
            "INSERT INTO schema_migrations (version, name) VALUES ({v:UInt32}, {n:String})",
            parameters={"v": migration.version, "n": migration.name},
        )
