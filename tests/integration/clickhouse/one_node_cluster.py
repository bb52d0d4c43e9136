"""Run generated cluster statements in a chdb that defines a one-node cluster (a subprocess).

    python -m tests.integration.clickhouse.one_node_cluster DIR CLUSTER < statements.json

chdb reads a server config when its connection string names one, so here the cluster exists
(`remote_servers`: one shard, one replica on this node) and Distributed tables run: an INSERT
into one reaches the local table, a SELECT reads back through it. Keeper does not exist, so each
statement runs without ON CLUSTER and with the unreplicated engine. A separate process because
chdb opens one data directory per process, and the test session's engine holds another. Prints
a JSON object: the statements run, and what the checks read back.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import chdb

_REPLICATED = re.compile(r"ENGINE = Replicated(\w+MergeTree)\('[^']*', '[^']*'(?:, )?")
# Never listened on: chdb serves no TCP. ClickHouse compares a replica's host and port with its
# own to know the replica is itself, and then inserts and reads locally.
_CONFIG = """<clickhouse>
  <tcp_port>19000</tcp_port>
  <remote_servers><{cluster}><shard><internal_replication>true</internal_replication>
    <replica><host>localhost</host><port>19000</port></replica>
  </shard></{cluster}></remote_servers>
  <macros><cluster>{cluster}</cluster><shard>1</shard><replica>one</replica></macros>
</clickhouse>
"""


def single_node(statement: str, cluster: str) -> str:
    statement = statement.replace(f" ON CLUSTER `{cluster}`", "")
    return _REPLICATED.sub(r"ENGINE = \1(", statement).replace("MergeTree()", "MergeTree")


def main() -> None:
    directory, cluster = Path(sys.argv[1]), sys.argv[2]
    statements: list[str] = json.load(sys.stdin)
    config = directory / "config.xml"
    config.write_text(_CONFIG.format(cluster=cluster), encoding="utf-8")
    connection = chdb.connect(f"{directory / 'data'}?config-file={config}")
    cursor = connection.cursor()

    def rows(sql: str) -> list[list[object]]:
        cursor.execute(sql)
        return [list(row) for row in cursor.fetchall()]

    rows("CREATE DATABASE IF NOT EXISTS logorhythms")
    for statement in statements:
        rows(single_node(statement, cluster))
    rows(
        "INSERT INTO logorhythms.exchanges (request_id, received_at, provider, model_requested, "
        "status, outcome, prompt_tokens, duration_ms, upstream_response_text) "
        "SETTINGS distributed_foreground_insert = 1 VALUES ('0192b8a0-0000-7000-8000-"
        "000000000002', '2026-12-03 07:00:05', 'openai', 'gpt-x', 200, 'ok', 7, 12.5, 'hi')"
    )
    result = {
        "ran": len(statements),
        "clusters": rows("SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster"),
        "engines": rows(
            "SELECT name, engine FROM system.tables WHERE database = 'logorhythms' ORDER BY name"
        ),
        "exchange": rows(
            "SELECT request_id, upstream_response_text FROM logorhythms.exchanges FINAL"
        ),
        "local": rows("SELECT count() FROM logorhythms.exchanges_local"),
        "rollup": rows(
            "SELECT provider, model, sum(exchanges), sum(prompt_tokens) "
            "FROM logorhythms.exchanges_per_minute GROUP BY ALL"
        ),
    }
    connection.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
