"""Migrations applied to a ClickHouse server cluster, in their generated cluster form.

`logorhythms migrate --cluster NAME` runs this with an administrator's connection: it parses each
migration with the server's own parser (see ``clusterddl``), applies the missing versions ON
CLUSTER, records each version once in the cluster-wide ``schema_migrations``, then applies the
access statements (the loader's and the analysts' users and roles). ``plan`` does the same
without a cluster, for printing: the embedded engine's parser is enough.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.clusterddl import (
    ClusterNames,
    ParsedStatement,
    cluster_statements,
    database_statement,
    schema_migrations_statement,
    with_cluster,
)
from consumers.clickhouse.migrate import (
    Migration,
    SchemaTooNewError,
    check_server_version,
    load_migrations,
    server_version,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClusterMigration:
    version: int
    name: str
    statements: tuple[str, ...]


async def parse(clickhouse: ClickHouse, statement: str) -> ParsedStatement:
    """One statement as the server's parser sees it (a syntax error raises ClickHouseError)."""
    canonical = await clickhouse.rows("SELECT formatQuerySingleLine({q:String})", {"q": statement})
    tree = await clickhouse.rows(f"EXPLAIN AST {statement}")
    return ParsedStatement(str(canonical[0][0]), tuple(str(row[0]) for row in tree))


async def plan(
    clickhouse: ClickHouse, names: ClusterNames, migrations: Sequence[Migration] | None = None
) -> list[ClusterMigration]:
    """Every migration's cluster form, parsed by ``clickhouse`` (any engine: nothing is run)."""
    result = []
    for migration in load_migrations() if migrations is None else migrations:
        parsed = [await parse(clickhouse, s) for s in migration.statements]
        where = f"migration {migration.version:04d}_{migration.name}"
        statements = cluster_statements(where, parsed, names)
        result.append(ClusterMigration(migration.version, migration.name, tuple(statements)))
    return result


def preamble(names: ClusterNames) -> list[str]:
    """What exists before any migration: the database and the version table."""
    return [database_statement(names), schema_migrations_statement(names)]


def access(names: ClusterNames, access_statements: Sequence[str]) -> list[str]:
    return [with_cluster(statement, names) for statement in access_statements]


async def migrate_cluster(
    clickhouse: ClickHouse, names: ClusterNames, access_statements: Sequence[str]
) -> int:
    """Bring the cluster to this release's schema and access; return the schema version."""
    check_server_version(await server_version(clickhouse))
    for statement in preamble(names):
        await clickhouse.command(statement)
    table = f"{names.database}.schema_migrations"
    rows = await clickhouse.rows(f"SELECT max(version) FROM {table}")  # noqa: S608 (identifier checked)
    current = int(rows[0][0]) if rows and rows[0][0] is not None else 0
    planned = await plan(clickhouse, names)
    known = planned[-1].version if planned else 0
    if current > known:
        raise SchemaTooNewError(
            f"the cluster's schema is at version {current} but this release knows only up to "
            f"{known}: run the newer release's `logorhythms migrate` (nothing was changed)"
        )
    for migration in planned:
        if migration.version <= current:
            continue
        log.info(
            "applying ClickHouse migration %04d_%s on cluster %s",
            migration.version,
            migration.name,
            names.cluster,
        )
        for statement in migration.statements:
            await clickhouse.command(statement)
        # Once: every node is a replica of the one version table.
        await clickhouse.command(
            f"INSERT INTO {table} (version, name) VALUES ({{v:UInt32}}, {{n:String}})",  # noqa: S608
            parameters={"v": migration.version, "n": migration.name},
        )
    for statement in access(names, access_statements):
        await clickhouse.command(statement)
    return max(current, known)
