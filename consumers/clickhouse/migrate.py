"""Versioned, idempotent schema migrations, applied when the loader starts."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from consumers.clickhouse.client import ClickHouse

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaTooNewError(Exception):
    retriable = False


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def load_migrations() -> list[Migration]:
    folder = resources.files("consumers.clickhouse") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        text = _strip_comments(entry.read_text(encoding="utf-8"))
        statements = tuple(s.strip() for s in text.split(";") if s.strip())
        found.append(Migration(int(match.group(1)), match.group(2), statements))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1..n without gaps, found {versions}")
    return found


async def migrate(clickhouse: ClickHouse) -> int:
    """Apply every migration newer than the database's version; return the resulting version."""
    migrations = load_migrations()
    known = migrations[-1].version if migrations else 0
    await clickhouse.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    rows = await clickhouse.rows("SELECT max(version) FROM schema_migrations")
    current = int(rows[0][0]) if rows and rows[0][0] is not None else 0
    if current > known:
        raise SchemaTooNewError(
            f"the database schema is at version {current} but this loader knows only up to "
            f"{known}: upgrade Logorhythms before loading into it (nothing was changed)"
        )
    for migration in migrations:
        if migration.version <= current:
            continue
        log.info("applying ClickHouse migration %04d_%s", migration.version, migration.name)
        for statement in migration.statements:
            await clickhouse.command(statement)
        await clickhouse.command(
            "INSERT INTO schema_migrations (version, name) VALUES ({v:UInt32}, {n:String})",
            parameters={"v": migration.version, "n": migration.name},
        )
    return max(current, known)
