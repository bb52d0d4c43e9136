"""Versioned, idempotent schema migrations, applied when the loader starts."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from consumers.clickhouse.client import ClickHouse

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


# The oldest server the migrations run on: UUIDv7ToDateTime (0001, 0003) arrived in 24.5.
MIN_SERVER_VERSION = (24, 5)


class SchemaRefusedError(Exception):
    """The loader will not touch this database's schema; the message says what to do."""

    retriable = False


class SchemaTooNewError(SchemaRefusedError):
    """The database was migrated by a newer Logorhythms."""


class ServerTooOldError(SchemaRefusedError):
    """The ClickHouse server cannot hold this schema; nothing was changed."""


class ClusterSchemaBehindError(SchemaRefusedError):
    """A cluster's schema is older than this loader's: ``logorhythms migrate --cluster`` first."""


def check_server_version(version: str) -> None:
    """Refuse a server older than MIN_SERVER_VERSION, naming both versions."""
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        raise ServerTooOldError(
            f"the ClickHouse server reports version {version!r}, which is not a version number"
        ) from None
    if found < MIN_SERVER_VERSION:
        needed = ".".join(map(str, MIN_SERVER_VERSION))
        raise ServerTooOldError(
            f"the ClickHouse server is version {version}; the Logorhythms schema needs {needed} "
            "or newer (UUIDv7ToDateTime, Bool, deduplication tokens). Upgrade the server (e.g. "
            "the clickhouse/clickhouse-server image, or ClickHouse's own packages, not the "
            "distribution's), or use the embedded engine (CLICKHOUSE_URL=chdb://PATH); nothing "
            "was changed"
        )


async def server_version(clickhouse: ClickHouse) -> str:
    rows = await clickhouse.rows("SELECT version()")
    return str(rows[0][0])


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(sql: str) -> tuple[str, ...]:
    """The statements of a SQL file: ``--`` comment lines dropped, split on ``;``."""
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return tuple(s.strip() for s in text.split(";") if s.strip())


def load_migrations() -> list[Migration]:
    folder = resources.files("consumers.clickhouse") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        statements = split_statements(entry.read_text(encoding="utf-8"))
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
    check_server_version(await server_version(clickhouse))
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
    if current < known and await _is_replicated(clickhouse):
        # Embedded migrations would create unreplicated tables on one node of a cluster.
        raise ClusterSchemaBehindError(
            f"the cluster's schema is at version {current} and this loader needs {known}: run "
            "`logorhythms migrate --cluster NAME` with an administrator's CLICKHOUSE_URL first "
            "(nothing was changed)"
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


async def _is_replicated(clickhouse: ClickHouse) -> bool:
    rows = await clickhouse.rows(
        "SELECT engine FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'schema_migrations'"
    )
    return bool(rows) and str(rows[0][0]).startswith("Replicated")
