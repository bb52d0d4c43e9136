"""The cluster form of each migration, derived from ClickHouse's own parse of it (pure, no I/O).

The migrations in ``migrations/`` are the one schema. For a server cluster each statement is
rewritten, never restated by hand:

- ``CREATE TABLE t`` becomes ``t_local`` on every node, its engine the Replicated variant with a
  Keeper path per shard (macros ``{shard}`` and ``{replica}`` from the server config), and a
  Distributed ``t`` over it: what the loader writes to and analysts query. A table with a
  ``request_id`` column is sharded by ``cityHash64(request_id)``, so every event of one exchange
  lives on one shard and ReplacingMergeTree collapses its duplicates there; any other table by
  its sorting key.
- ``ALTER TABLE t ADD INDEX|CONSTRAINT`` goes to ``t_local`` only (a Distributed table holds no
  data to index or check); ``ADD|DROP|MODIFY COLUMN`` goes to ``t_local`` then to ``t``.
- ``CREATE MATERIALIZED VIEW v TO r AS SELECT ... FROM s`` runs on every node from ``s_local``
  into ``r_local``: each shard's rows feed that shard's rollup.

Each statement arrives as :class:`ParsedStatement`: the server's canonical one-line text
(``formatQuerySingleLine``) and its syntax tree (``EXPLAIN AST``). The tree says what a statement
is; the rewrite edits the canonical text, whose spelling the parser fixes. A statement of a kind
not listed above is refused with its migration named, never passed through unreplicated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Keeper holds one path per table and shard; a replica adds itself under it.
KEEPER_PATH = "/clickhouse/tables/{shard}/%(database)s/%(table)s"
# schema_migrations: one table for the whole cluster (every node a replica of it), so a version
# is recorded once and every node reads it.
SCHEMA_MIGRATIONS_PATH = "/clickhouse/tables/all/%(database)s/schema_migrations"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLUSTER = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_.-]*|\{cluster\})$")
_LOCAL_ONLY = frozenset({"ADD_INDEX", "DROP_INDEX", "ADD_CONSTRAINT", "DROP_CONSTRAINT"})
_BOTH = frozenset({"ADD_COLUMN", "DROP_COLUMN", "MODIFY_COLUMN", "COMMENT_COLUMN"})
_MERGE_TREES = frozenset(
    {
        "MergeTree",
        "ReplacingMergeTree",
        "AggregatingMergeTree",
        "SummingMergeTree",
        "CollapsingMergeTree",
        "VersionedCollapsingMergeTree",
    }
)


class ClusterDdlError(Exception):
    """A migration statement has no cluster form here; the message names it."""

    retriable = False


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """One statement as ClickHouse's parser sees it."""

    canonical: str  # formatQuerySingleLine
    ast: tuple[str, ...]  # EXPLAIN AST, one node per line, indented by depth


@dataclass(frozen=True, slots=True)
class ClusterNames:
    cluster: str
    database: str

    def __post_init__(self) -> None:
        if not _CLUSTER.match(self.cluster):
            raise ClusterDdlError(
                f"cluster name {self.cluster!r} is not a ClickHouse cluster name: use the name "
                "under <remote_servers> in the server config (letters, digits, _ . -)"
            )
        if not _IDENTIFIER.match(self.database):
            raise ClusterDdlError(
                f"database name {self.database!r}: use letters, digits and _ only"
            )

    @property
    def on_cluster(self) -> str:
        return f"ON CLUSTER `{self.cluster}`"


def _root(statement: ParsedStatement) -> tuple[str, str]:
    """The statement's kind and its table: ``('CreateQuery', 'exchanges')``."""
    kind, _, name = statement.ast[0].strip().partition(" ")
    name = name.strip().split(" (children")[0].strip()
    return kind, name


def _nodes(statement: ParsedStatement, kind: str) -> list[str]:
    """The names of every AST node of ``kind``: ``ColumnDeclaration request_id`` → request_id."""
    found = []
    for line in statement.ast:
        node, _, rest = line.strip().partition(" ")
        if node == kind:
            found.append(rest.split(" (children")[0].strip())
    return found


def _matching_paren(text: str, start: int) -> int:
    """The index of the parenthesis closing the one at ``start`` (quotes respected)."""
    depth, quote, i = 0, "", start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ClusterDdlError(f"unbalanced parentheses in {text[:80]!r}")


def _refuse(where: str, statement: ParsedStatement, why: str) -> ClusterDdlError:
    return ClusterDdlError(
        f"{where}: {why}: {statement.canonical[:120]!r}. Give it a cluster form in "
        "consumers/clickhouse/clusterddl.py (and a test) before releasing the migration"
    )


def database_statement(names: ClusterNames) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {names.database} {names.on_cluster}"


def schema_migrations_statement(names: ClusterNames) -> str:
    """The version table the loader reads, one replicated table for the whole cluster."""
    path = SCHEMA_MIGRATIONS_PATH % {"database": names.database}
    return (
        f"CREATE TABLE IF NOT EXISTS {names.database}.schema_migrations {names.on_cluster} "
        "(`version` UInt32, `name` String, `applied_at` DateTime64(3, 'UTC') DEFAULT now64(3)) "
        f"ENGINE = ReplicatedReplacingMergeTree('{path}', '{{shard}}-{{replica}}') "
        "ORDER BY version"
    )


def _create_table(statement: ParsedStatement, table: str, names: ClusterNames) -> list[str]:
    text = statement.canonical
    prefix = f"CREATE TABLE IF NOT EXISTS {table} ("
    if not text.startswith(prefix):
        raise ClusterDdlError("a table is created with IF NOT EXISTS and a column list")
    close = _matching_paren(text, len(prefix) - 1)
    columns = text[len(prefix) - 1 : close + 1]
    tail = text[close + 1 :]
    engine_match = re.match(r" ENGINE = (\w+)(\(([^()]*)\))?", tail)
    if engine_match is None:
        raise ClusterDdlError("no ENGINE clause")
    engine, args = engine_match.group(1), engine_match.group(3)
    if engine not in _MERGE_TREES:
        raise ClusterDdlError(f"engine {engine} has no Replicated variant here")
    path = KEEPER_PATH % {"database": names.database, "table": table}
    replicated_args = ", ".join([f"'{path}'", "'{replica}'", *([args] if args else [])])
    rest = tail[engine_match.end() :].replace(
        "non_replicated_deduplication_window", "replicated_deduplication_window"
    )
    local = (
        f"CREATE TABLE IF NOT EXISTS {names.database}.{table}_local {names.on_cluster} "
        f"{columns} ENGINE = Replicated{engine}({replicated_args}){rest}"
    )
    if "request_id" in _nodes(statement, "ColumnDeclaration"):
        key = "request_id"
    else:
        order = re.search(r" ORDER BY (\(.*?\)|\S+)", rest)
        if order is None:
            raise ClusterDdlError("no request_id column and no ORDER BY to shard by")
        key = order.group(1).removeprefix("(").removesuffix(")")
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {names.database}.{table} {names.on_cluster} "
        f"AS {names.database}.{table}_local ENGINE = Distributed('{names.cluster}', "
        f"{names.database}, {table}_local, cityHash64({key}))"
    )
    return [local, distributed]


def _alter(statement: ParsedStatement, table: str, names: ClusterNames) -> list[str]:
    commands = {
        line.split()[1] for line in statement.ast if line.strip().startswith("AlterCommand")
    }
    prefix = f"ALTER TABLE {table} "
    if not statement.canonical.startswith(prefix) or not commands:
        raise ClusterDdlError("an ALTER TABLE of one table")
    body = statement.canonical[len(prefix) :]
    local = f"ALTER TABLE {names.database}.{table}_local {names.on_cluster} {body}"
    if commands <= _LOCAL_ONLY:
        return [local]
    if commands <= _BOTH:
        return [local, f"ALTER TABLE {names.database}.{table} {names.on_cluster} {body}"]
    raise ClusterDdlError(f"ALTER commands {sorted(commands)} (mixed, or not yet mapped)")


def _materialized_view(statement: ParsedStatement, view: str, names: ClusterNames) -> list[str]:
    match = re.match(
        rf"CREATE MATERIALIZED VIEW IF NOT EXISTS {re.escape(view)} TO (\w+) AS (SELECT .*)$",
        statement.canonical,
    )
    sources = _nodes(statement, "TableIdentifier")
    if match is None or len(sources) != 1:
        raise ClusterDdlError("a view is materialized TO a table from exactly one table")
    target, select = match.group(1), match.group(2)
    source = sources[0]
    pieces = select.split(f" FROM {source}")
    if len(pieces) != 2:
        raise ClusterDdlError(f"FROM {source} must appear once")
    select = f" FROM {names.database}.{source}_local".join(pieces)
    return [
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {names.database}.{view} {names.on_cluster} "
        f"TO {names.database}.{target}_local AS {select}"
    ]


def cluster_statements(
    where: str, statements: Sequence[ParsedStatement], names: ClusterNames
) -> list[str]:
    """The cluster form of one migration's statements, in order; ``where`` names it in errors."""
    result: list[str] = []
    for statement in statements:
        kind, name = _root(statement)
        is_view = any(line.strip() == "ViewTargets" for line in statement.ast)
        try:
            if kind == "CreateQuery" and statement.canonical.startswith("CREATE MATERIALIZED VIEW"):
                result += _materialized_view(statement, name, names)
            elif kind == "CreateQuery" and not is_view:
                result += _create_table(statement, name, names)
            elif kind == "AlterQuery":
                result += _alter(statement, name, names)
            else:
                raise ClusterDdlError(f"statement kind {kind}")
        except ClusterDdlError as exc:
            raise _refuse(where, statement, str(exc)) from None
    return result


def with_cluster(access_statement: str, names: ClusterNames) -> str:
    """An access statement (deploy/clickhouse/*.sql) aimed at ``names.cluster``.

    Those files say ``ON CLUSTER '{cluster}'``, the server macro, so they also run as they are.
    """
    return access_statement.replace("'{cluster}'", f"`{names.cluster}`")
