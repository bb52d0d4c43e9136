"""The cluster DDL, generated from the migrations, checked by ClickHouse itself (chdb).

What chdb runs, each statement without ON CLUSTER and with the unreplicated engine (there is no
Keeper): every `<name>_local` table, index, constraint and ALTER, whose columns, codecs, keys,
indexes and constraints must equal what the loader's own migrations build; the rollup view; and,
in a chdb given a config that defines a one-node cluster (one_node_cluster.py), every statement
including the Distributed tables, with an insert through them read back. What chdb only parses:
the ON CLUSTER clause, the Replicated engines and their Keeper paths, the version table, and the
access statements (one user, no access control). docs/OPERATIONS.md repeats this list.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.clusterddl import ClusterNames
from consumers.clickhouse.clustermigrate import access, plan, preamble
from consumers.clickhouse.migrate import load_migrations, migrate
from deploy.clustermigration import access_statements

CLUSTER = "logorhythms_cluster"
_REPLICATED = re.compile(r"ENGINE = Replicated(\w+MergeTree)\('[^']*', '[^']*'(?:, )?")


def _single_node(statement: str) -> str:
    """What chdb can run of a generated statement: no ON CLUSTER, the unreplicated engine."""
    statement = statement.replace(f" ON CLUSTER `{CLUSTER}`", "")
    return _REPLICATED.sub(r"ENGINE = \1(", statement).replace("MergeTree()", "MergeTree")


async def _generated(clickhouse: ClickHouse, database: str) -> list[str]:
    names = ClusterNames(CLUSTER, database)
    planned = await plan(clickhouse, names)
    return [s for m in planned for s in m.statements]


async def test_every_generated_statement_parses_and_targets_the_cluster(
    clickhouse: ClickHouse,
) -> None:
    names = ClusterNames(CLUSTER, "logorhythms")
    generated = await _generated(clickhouse, "logorhythms")
    everything = [*preamble(names), *generated, *access(names, access_statements())]
    assert len(generated) > 25
    for statement in everything:
        rows = await clickhouse.rows("SELECT formatQuerySingleLine({q:String})", {"q": statement})
        formatted = rows[0][0]
        # What the parser kept: a dropped clause would run on one node only.
        assert re.search(rf"\bON CLUSTER `?{CLUSTER}\b", formatted), statement
    tables = [s for s in generated if s.startswith("CREATE TABLE")]
    for table in (
        "requests_raw",
        "chunks_raw",
        "completions_raw",
        "exchanges",
        "exchanges_per_minute",
    ):
        local = next(s for s in tables if f"logorhythms.{table}_local " in s)
        assert "ENGINE = Replicated" in local
        assert f"'/clickhouse/tables/{{shard}}/logorhythms/{table}', '{{replica}}'" in local
        assert any(
            f"ENGINE = Distributed('{CLUSTER}', logorhythms, {table}_local, cityHash64(" in s
            for s in tables
        ), table
    assert not any("non_replicated" in s for s in generated)


async def _shape(clickhouse: ClickHouse, database: str, suffix: str) -> dict[str, object]:
    """Each table's columns, keys, indexes and constraints as the engine reports them."""
    columns = await clickhouse.rows(
        "SELECT replaceOne(table, {s:String}, ''), name, type, default_kind, "
        "default_expression, compression_codec, position FROM system.columns "
        "WHERE database = {d:String} AND table != 'schema_migrations' ORDER BY table, position",
        {"d": database, "s": suffix},
    )
    tables = await clickhouse.rows(
        "SELECT replaceOne(name, {s:String}, ''), replaceOne(engine, 'Replicated', ''), "
        "sorting_key, partition_key, primary_key FROM system.tables "
        "WHERE database = {d:String} AND engine LIKE '%MergeTree' "
        "AND name != 'schema_migrations' ORDER BY name",
        {"d": database, "s": suffix},
    )
    indexes = await clickhouse.rows(
        "SELECT replaceOne(table, {s:String}, ''), name, type_full, expr, granularity "
        "FROM system.data_skipping_indices WHERE database = {d:String} ORDER BY table, name",
        {"d": database, "s": suffix},
    )
    creates = await clickhouse.rows(
        "SELECT replaceOne(name, {s:String}, ''), create_table_query FROM system.tables "
        "WHERE database = {d:String} AND engine LIKE '%MergeTree' ORDER BY name",
        {"d": database, "s": suffix},
    )
    constraints = sorted(
        (name, found)
        for name, query in creates
        for found in re.findall(r"CONSTRAINT (\w+ CHECK [^,)]+\))", query)
    )
    return {"columns": columns, "tables": tables, "indexes": indexes, "checks": constraints}


async def test_the_local_tables_equal_what_the_loaders_migrations_build(
    clickhouse: ClickHouse,
) -> None:
    embedded, cluster = f"e_{uuid.uuid4().hex[:10]}", f"c_{uuid.uuid4().hex[:10]}"
    await clickhouse.command(f"CREATE DATABASE {embedded}")
    await clickhouse.command(f"CREATE DATABASE {cluster}")
    url = clickhouse.url.split("?")[0]
    async with ClickHouse(f"{url}?database={embedded}") as loader_view:
        assert await migrate(loader_view) == load_migrations()[-1].version
    ran = skipped = 0
    for statement in await _generated(clickhouse, cluster):
        if "ENGINE = Distributed(" in statement or f"ALTER TABLE {cluster}.exchanges " in statement:
            skipped += 1  # Distributed: chdb defines no cluster for it to name
            continue
        await clickhouse.command(_single_node(statement))
        ran += 1
    assert ran > 20
    tables = sum(s.startswith("CREATE TABLE") for m in load_migrations() for s in m.statements)
    assert skipped == tables + 5  # one Distributed table per table; 0005's columns on `exchanges`
    want = await _shape(clickhouse, embedded, "")
    got = await _shape(clickhouse, cluster, "_local")
    assert len(want["columns"]) > 150  # type: ignore[arg-type]
    assert len(want["indexes"]) >= 9  # type: ignore[arg-type]
    assert len(want["checks"]) == 3  # type: ignore[arg-type]
    assert got == want


async def test_the_rollup_view_on_a_node_feeds_that_nodes_rollup(clickhouse: ClickHouse) -> None:
    database = f"c_{uuid.uuid4().hex[:10]}"
    await clickhouse.command(f"CREATE DATABASE {database}")
    for statement in await _generated(clickhouse, database):
        if "ENGINE = Distributed(" not in statement and (
            f"ALTER TABLE {database}.exchanges " not in statement
        ):
            await clickhouse.command(_single_node(statement))
    async with ClickHouse(f"{clickhouse.url.split('?')[0]}?database={database}") as node:
        await node.command(
            "INSERT INTO exchanges_local (request_id, received_at, provider, model_requested, "
            "status, outcome, prompt_tokens, duration_ms) VALUES ('0192b8a0-0000-7000-8000-"
            "000000000001', '2026-12-03 07:00:05', 'openai', 'gpt-x', 200, 'ok', 12, 40.5)"
        )
        rows = await node.rows(
            "SELECT minute, provider, model, sum(exchanges), sum(prompt_tokens) "
            "FROM exchanges_per_minute_local GROUP BY ALL"
        )
    assert [(str(r[0]), r[1], r[2], r[3], r[4]) for r in rows] == [
        ("2026-12-03 07:00:00", "openai", "gpt-x", 1, 12)
    ]


async def test_the_loader_accepts_this_engines_version(clickhouse: ClickHouse) -> None:
    """The version check runs on connect; the refusal itself is unit-tested (no old server here)."""
    version = (await clickhouse.rows("SELECT version()"))[0][0]
    assert int(str(version).split(".")[0]) >= 24
    assert await migrate(clickhouse) == load_migrations()[-1].version


async def test_a_one_node_cluster_runs_every_table_distributed_included(
    clickhouse: ClickHouse, tmp_path: Path
) -> None:
    """Distributed tables too: chdb given a config that defines the cluster (a subprocess)."""
    statements = await _generated(clickhouse, "logorhythms")
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.integration.clickhouse.one_node_cluster", str(tmp_path),
         CLUSTER],
        input=json.dumps(statements), capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["ran"] == len(statements)
    assert [CLUSTER] in found["clusters"]
    engines = dict(found["engines"])
    for table in (
        "requests_raw",
        "chunks_raw",
        "completions_raw",
        "exchanges",
        "exchanges_per_minute",
    ):
        assert engines[table] == "Distributed", table
        assert engines[f"{table}_local"].endswith("MergeTree"), table
    # An insert into the Distributed table reached the node's local table, its 0005 column
    # included, fed the node's rollup through the view, and reads back through both.
    assert found["exchange"] == [["0192b8a0-0000-7000-8000-000000000002", "hi"]]
    assert found["local"] == [[1]]
    assert found["rollup"] == [["openai", "gpt-x", 1, 7]]


def test_migrate_print_writes_the_whole_script_without_a_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "migrate", "--cluster", "prod", "--print"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert script.count("ON CLUSTER `prod`") > 70
    for migration in load_migrations():
        assert f"VALUES ({migration.version}, '{migration.name}');" in script
    assert "CREATE USER IF NOT EXISTS loader ON CLUSTER `prod`" in script
    assert "CREATE ROLE IF NOT EXISTS analyst_role ON CLUSTER `prod`" in script
    assert "'{cluster}'" not in script
