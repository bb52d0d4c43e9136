"""The production DDL (deploy/clickhouse/cluster.sql) declares exactly the embedded schema."""

from __future__ import annotations

import re
from pathlib import Path

from consumers.clickhouse.migrate import load_migrations

CLUSTER_DDL = Path(__file__).resolve().parents[4] / "deploy" / "clickhouse" / "cluster.sql"
_CREATE = re.compile(
    r"CREATE TABLE IF NOT EXISTS (?:logorhythms\.)?(\w+?)(_local)?(?: ON CLUSTER '\{cluster\}')?"
    r"\s*\(",
)
_ALTER = re.compile(r"ALTER TABLE (\w+) ADD (INDEX|CONSTRAINT) IF NOT EXISTS (.*)$", re.DOTALL)
_SKIPPED = ("schema_migrations",)  # created by migrate() itself, not by a migration


def _statements(sql: str) -> list[str]:
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def _norm(text: str) -> str:
    return " ".join(text.split())


def _body(statement: str, start: int) -> list[str]:
    """The comma-separated top-level items between the parenthesis at ``start`` and its match."""
    depth, items, current = 0, [], []
    for char in statement[start:]:
        if char == "(":
            depth += 1
            if depth == 1:
                continue
        elif char == ")":
            depth -= 1
            if depth == 0:
                break
        if char == "," and depth == 1:
            items.append(_norm("".join(current)))
            current = []
        else:
            current.append(char)
    items.append(_norm("".join(current)))
    return items


def _tables(statements: list[str], *, local_only: bool) -> dict[str, set[str]]:
    """Table → its column definitions, indexes and constraints (normalised text)."""
    tables: dict[str, set[str]] = {}
    for statement in statements:
        match = _CREATE.match(statement)
        if match and (match.group(2) or not local_only) and match.group(1) not in _SKIPPED:
            tables[match.group(1)] = set(_body(statement, match.end() - 1))
        altered = _ALTER.match(statement)
        if altered:
            tables[altered.group(1)].add(_norm(f"{altered.group(2)} {altered.group(3)}"))
    return tables


def test_cluster_tables_declare_the_same_columns_indexes_and_constraints() -> None:
    embedded = _tables([s for m in load_migrations() for s in m.statements], local_only=False)
    cluster = _tables(_statements(CLUSTER_DDL.read_text(encoding="utf-8")), local_only=True)
    assert set(cluster) == set(embedded)
    for table, definitions in embedded.items():
        assert cluster[table] == definitions, (
            f"{table}: only embedded {sorted(definitions - cluster[table])}, "
            f"only in cluster.sql {sorted(cluster[table] - definitions)}"
        )
    assert len(embedded["exchanges"]) > 70  # the parser really saw the columns


def test_every_cluster_table_is_replicated_and_distributed() -> None:
    ddl = CLUSTER_DDL.read_text(encoding="utf-8")
    embedded = _tables([s for m in load_migrations() for s in m.statements], local_only=False)
    for table in embedded:
        assert re.search(
            rf"logorhythms\.{table}_local ON CLUSTER[^;]*ENGINE = Replicated\w+MergeTree\("
            rf"'/clickhouse/tables/{{shard}}/logorhythms/{table}', '{{replica}}'",
            ddl,
        ), table
        assert f"Distributed('{{cluster}}', logorhythms, {table}_local," in ddl, table


def test_cluster_rollup_view_selects_what_the_embedded_one_does() -> None:
    def view(statements: list[str]) -> str:
        found = next(s for s in statements if s.startswith("CREATE MATERIALIZED VIEW"))
        select = found[found.index("SELECT") :]
        return _norm(select.replace("logorhythms.exchanges_local", "exchanges"))

    embedded = [s for m in load_migrations() for s in m.statements]
    assert view(_statements(CLUSTER_DDL.read_text(encoding="utf-8"))) == view(embedded)


def test_schema_version_recorded_matches_the_migrations() -> None:
    ddl = CLUSTER_DDL.read_text(encoding="utf-8")
    expected = ", ".join(f"({m.version}, '{m.name}')" for m in load_migrations())
    insert = "INSERT INTO logorhythms.schema_migrations (version, name) VALUES "
    assert f"{insert}{expected};" in ddl


def test_analysts_are_read_only() -> None:
    ddl = _norm(CLUSTER_DDL.read_text(encoding="utf-8"))
    assert "SETTINGS readonly = 2," in ddl
    assert "GRANT ON CLUSTER '{cluster}' SELECT ON logorhythms.* TO analyst_role" in ddl
    assert "SETTINGS PROFILE 'analyst_profile'" in ddl
    assert not re.search(r"GRANT[^;]*(INSERT|ALTER|ALL)[^;]*TO analyst", ddl)
