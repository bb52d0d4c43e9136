"""The cluster form of migration statements, from parsed input written as ClickHouse prints it.

The statements here are shaped like formatQuerySingleLine and EXPLAIN AST output; the
integration test (tests/integration/clickhouse/test_cluster_ddl.py) feeds the real parser's.
"""

from __future__ import annotations

import pytest

from consumers.clickhouse.clusterddl import (
    ClusterDdlError,
    ClusterNames,
    ParsedStatement,
    cluster_statements,
    with_cluster,
)
from consumers.clickhouse.migrate import ServerTooOldError, check_server_version

NAMES = ClusterNames("prod", "logorhythms")


def _create(name: str, columns: list[str], engine: str, rest: str) -> ParsedStatement:
    canonical = (
        f"CREATE TABLE IF NOT EXISTS {name} ("
        + ", ".join(f"`{c}` String" for c in columns)
        + f") ENGINE = {engine}{rest}"
    )
    ast = (
        f"CreateQuery {name} (children 3)",
        f" Identifier {name}",
        " Columns definition (children 1)",
        *(f"   ColumnDeclaration {c} (children 1)" for c in columns),
        " Storage definition (children 2)",
    )
    return ParsedStatement(canonical, ast)


def _alter(name: str, command: str, body: str) -> ParsedStatement:
    return ParsedStatement(
        f"ALTER TABLE {name} ({body})",
        (
            f"AlterQuery  {name} (children 2)",
            " ExpressionList (children 1)",
            f"  AlterCommand {command} (children 1)",
            f" Identifier {name}",
        ),
    )


def test_a_table_becomes_a_replicated_local_table_and_a_distributed_one() -> None:
    statement = _create(
        "exchanges",
        ["request_id", "loaded_at"],
        "ReplacingMergeTree(loaded_at)",
        " PARTITION BY toYYYYMM(received_at) ORDER BY request_id "
        "SETTINGS non_replicated_deduplication_window = 10000",
    )
    local, distributed = cluster_statements("migration 0002_x", [statement], NAMES)
    assert local == (
        "CREATE TABLE IF NOT EXISTS logorhythms.exchanges_local ON CLUSTER `prod` "
        "(`request_id` String, `loaded_at` String) ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/logorhythms/exchanges', '{replica}', loaded_at) "
        "PARTITION BY toYYYYMM(received_at) ORDER BY request_id "
        "SETTINGS replicated_deduplication_window = 10000"
    )
    assert distributed == (
        "CREATE TABLE IF NOT EXISTS logorhythms.exchanges ON CLUSTER `prod` AS "
        "logorhythms.exchanges_local ENGINE = Distributed('prod', logorhythms, exchanges_local, "
        "cityHash64(request_id))"
    )


def test_an_exchange_stays_on_one_shard_even_when_its_table_orders_by_more() -> None:
    statement = _create(
        "chunks_raw", ["request_id", "seq"], "ReplacingMergeTree", " ORDER BY (request_id, seq)"
    )
    local, distributed = cluster_statements("m", [statement], NAMES)
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/logorhythms/chunks_raw', "
        "'{replica}') ORDER BY (request_id, seq)" in local
    )
    assert distributed.endswith("cityHash64(request_id))")


def test_a_table_without_request_id_is_sharded_by_its_sorting_key() -> None:
    statement = _create(
        "per_minute", ["minute", "model"], "AggregatingMergeTree", " ORDER BY (minute, model)"
    )
    local, distributed = cluster_statements("m", [statement], NAMES)
    assert "ENGINE = ReplicatedAggregatingMergeTree(" in local
    assert distributed.endswith("cityHash64(minute, model))")


def test_indexes_and_constraints_go_to_the_local_table_only() -> None:
    statement = _alter(
        "exchanges",
        "ADD_INDEX",
        "ADD INDEX IF NOT EXISTS i client_ip TYPE bloom_filter(0.01) GRANULARITY 4",
    )
    assert cluster_statements("m", [statement], NAMES) == [
        "ALTER TABLE logorhythms.exchanges_local ON CLUSTER `prod` "
        "(ADD INDEX IF NOT EXISTS i client_ip TYPE bloom_filter(0.01) GRANULARITY 4)"
    ]


def test_a_new_column_goes_to_the_local_table_then_the_distributed_one() -> None:
    statement = _alter("exchanges", "ADD_COLUMN", "ADD COLUMN IF NOT EXISTS `x` String AFTER y")
    local, distributed = cluster_statements("m", [statement], NAMES)
    assert local.startswith("ALTER TABLE logorhythms.exchanges_local ON CLUSTER `prod` (ADD")
    assert distributed.startswith("ALTER TABLE logorhythms.exchanges ON CLUSTER `prod` (ADD")


def test_a_rollup_view_reads_and_writes_the_local_tables_of_its_shard() -> None:
    statement = ParsedStatement(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS mv TO per_minute AS SELECT count() AS n "
        "FROM exchanges GROUP BY minute",
        (
            "CreateQuery mv (children 3)",
            " Identifier mv",
            "       TableIdentifier exchanges",
            " ViewTargets",
        ),
    )
    assert cluster_statements("m", [statement], NAMES) == [
        "CREATE MATERIALIZED VIEW IF NOT EXISTS logorhythms.mv ON CLUSTER `prod` TO "
        "logorhythms.per_minute_local AS SELECT count() AS n FROM logorhythms.exchanges_local "
        "GROUP BY minute"
    ]


@pytest.mark.parametrize(
    "statement",
    [
        ParsedStatement("DROP TABLE IF EXISTS exchanges", ("DropQuery  exchanges",)),
        ParsedStatement("RENAME TABLE a TO b", ("Rename (children 2)",)),
        _alter("exchanges", "RENAME_COLUMN", "RENAME COLUMN a TO b"),
        _create("t", ["request_id"], "Log", ""),
        _create("t", ["a"], "MergeTree", " PARTITION BY a"),  # nothing to shard by
    ],
)
def test_a_statement_without_a_cluster_form_is_refused_and_named(
    statement: ParsedStatement,
) -> None:
    with pytest.raises(ClusterDdlError) as caught:
        cluster_statements("migration 0009_next", [statement], NAMES)
    message = str(caught.value)
    assert "migration 0009_next" in message
    assert "consumers/clickhouse/clusterddl.py" in message


@pytest.mark.parametrize("name", ["", "a b", "x;DROP", "`q`", "c'"])
def test_cluster_names_that_are_not_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ClusterDdlError, match="remote_servers"):
        ClusterNames(name, "logorhythms")


def test_access_statements_name_the_cluster_instead_of_the_macro() -> None:
    text = "GRANT ON CLUSTER '{cluster}' SELECT ON logorhythms.* TO analyst_role"
    assert (
        with_cluster(text, NAMES)
        == "GRANT ON CLUSTER `prod` SELECT ON logorhythms.* TO analyst_role"
    )


@pytest.mark.parametrize("version", ["18.16.1", "23.8.2.7", "24.4.1.2048"])
def test_a_server_older_than_the_schema_is_refused_with_what_to_do(version: str) -> None:
    with pytest.raises(ServerTooOldError) as caught:
        check_server_version(version)
    assert version in str(caught.value)
    assert "24.5 or newer" in str(caught.value)
    assert "nothing was changed" in str(caught.value)


@pytest.mark.parametrize("version", ["24.5.1.1", "25.3.2", "26.9.2.1"])
def test_a_current_server_is_accepted(version: str) -> None:
    check_server_version(version)


def test_a_version_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ServerTooOldError, match="not a version number"):
        check_server_version("unknown")
