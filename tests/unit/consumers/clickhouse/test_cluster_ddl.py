"""The production DDL (deploy/clickhouse/cluster.sql) declares exactly the embedded schema."""

from __future__ import annotations

import re
from pathlib import Path

from consumers.clickhouse.migrate import load_migrations
from consumers.clickhouse.sqlpolicy import ALLOWED_SYSTEM_TABLES
from consumers.settings import SqlLimits

CLUSTER_DDL = Path(__file__).resolve().parents[4] / "deploy" / "clickhouse" / "cluster.sql"
ANALYST_DDL = CLUSTER_DDL.with_name("analyst.sql")
_CREATE = re.compile(
    r"CREATE TABLE IF NOT EXISTS (?:logorhythms\.)?(\w+?)(_local)?(?: ON CLUSTER '\{cluster\}')?"
    r"\s*\(",
)
_ALTER = re.compile(r"ALTER TABLE (\w+) ADD (INDEX|CONSTRAINT) IF NOT EXISTS (.*)$", re.DOTALL)
_ADD_COLUMN = re.compile(
    r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (.*?)(?: (?:AFTER \w+|FIRST))?$", re.DOTALL
)
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
        added = _ADD_COLUMN.match(statement)
        if added:
            tables[added.group(1)].add(_norm(added.group(2)))
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


def test_analysts_are_defined_in_one_place() -> None:
    statements = _statements(CLUSTER_DDL.read_text(encoding="utf-8"))
    assert not [s for s in statements if "analyst" in s]


def _analyst_statements() -> list[str]:
    return [_norm(s) for s in _statements(ANALYST_DDL.read_text(encoding="utf-8"))]


def test_analysts_profile_is_readonly_with_the_endpoints_limits() -> None:
    profile = next(s for s in _analyst_statements() if s.startswith("CREATE SETTINGS PROFILE"))
    limits = SqlLimits()
    assert "readonly = 1 CONST" in profile
    for setting, value in [
        ("max_execution_time", limits.max_execution_time_s),
        ("max_memory_usage", limits.max_memory_usage_bytes),
        ("max_result_rows", limits.max_result_rows),
        ("max_result_bytes", limits.max_result_bytes),
    ]:
        assert f"{setting} = {value} MAX {value}" in profile, setting
    assert f"max_concurrent_queries_for_user = {limits.max_concurrent_queries} CONST" in profile
    assert "result_overflow_mode = 'throw' CONST" in profile


def test_analysts_are_granted_select_on_our_tables_and_the_allowed_system_tables_only() -> None:
    statements = _analyst_statements()
    grants = [s for s in statements if s.startswith("GRANT")]
    selected = set()
    for grant in grants:
        match = re.fullmatch(
            r"GRANT ON CLUSTER '\{cluster\}' (.+?) ON (\S+) TO analyst_role", grant
        )
        if match is None:
            assert grant == "GRANT ON CLUSTER '{cluster}' analyst_role TO analyst", grant
            continue
        assert match.group(1) == "SELECT", grant
        selected.add(match.group(2))
    system = {name.removeprefix("system.") for name in selected if name.startswith("system.")}
    # query_log and processes: server mode only, each under a row policy (own queries).
    assert system == ALLOWED_SYSTEM_TABLES | {"query_log", "processes"}
    assert selected - {f"system.{t}" for t in system} == {"logorhythms.*"}
    for table in ("query_log", "processes"):
        assert any(
            s.startswith("CREATE ROW POLICY")
            and f"ON system.{table} " in s
            and "USING user = currentUser() TO analyst_role" in s
            for s in statements
        ), table
    # Everything else is taken back first, before anything is granted.
    revoke = statements.index("REVOKE ON CLUSTER '{cluster}' ALL ON *.* FROM analyst_role")
    assert revoke < statements.index(grants[0])
    assert not any(
        re.search(r"\b(SOURCES|FILE|URL|S3|REMOTE|KILL|TEMPORARY|dictGet|INSERT|ALTER|ALL)\b", g)
        for g in grants
    )


def test_the_analyst_user_cannot_log_in_until_given_a_password_and_networks() -> None:
    user = next(s for s in _analyst_statements() if s.startswith("CREATE USER"))
    assert "IDENTIFIED WITH no_password HOST NONE" in user
    assert "SETTINGS PROFILE 'analyst_profile'" in user
