"""What the access files (deploy/clickhouse/loader.sql, analyst.sql) grant, read as text.

Parsed by ClickHouse's own parser in tests/integration/clickhouse/test_cluster_ddl.py; no server
runs here to execute them (chdb has one user and no access control).
"""

from __future__ import annotations

import re

from consumers.clickhouse.migrate import split_statements
from consumers.clickhouse.sqlpolicy import ALLOWED_SYSTEM_TABLES, DENIED_TABLES
from consumers.settings import SqlLimits
from deploy.clustermigration import ACCESS_FILES

LOADER_SQL, ANALYST_SQL, EXPORTER_SQL = ACCESS_FILES


def _norm(text: str) -> str:
    return " ".join(text.split())


def _analyst_statements() -> list[str]:
    return [_norm(s) for s in split_statements(ANALYST_SQL.read_text(encoding="utf-8"))]


def _loader_statements() -> list[str]:
    return [_norm(s) for s in split_statements(LOADER_SQL.read_text(encoding="utf-8"))]


def test_the_loader_may_insert_and_read_our_tables_and_nothing_else() -> None:
    statements = _loader_statements()
    grants = [s for s in statements if s.startswith("GRANT")]
    assert grants == [
        "GRANT ON CLUSTER '{cluster}' SELECT, INSERT ON logorhythms.* TO loader",
        "GRANT ON CLUSTER '{cluster}' CREATE TABLE ON logorhythms.schema_migrations TO loader",
    ]
    user = next(s for s in statements if s.startswith("CREATE USER"))
    assert "HOST NONE" in user  # no login until an operator sets a password and networks
    profile = next(s for s in statements if s.startswith("CREATE SETTINGS PROFILE"))
    assert "distributed_foreground_insert = 1" in profile
    assert "deduplicate_blocks_in_dependent_materialized_views = 1" in profile


def test_analysts_are_not_in_the_loaders_file() -> None:
    assert not [s for s in _loader_statements() if "analyst" in s]


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


def test_analysts_cannot_read_the_record_of_exports() -> None:
    """The operators' trail (case references, recipients, tracing keys) is taken back from the
    analysts' grant on the whole database, as the embedded endpoint's policy refuses it."""
    statements = _analyst_statements()
    revoke = "REVOKE ON CLUSTER '{cluster}' SELECT ON logorhythms.export_audit FROM analyst_role"
    grant = "GRANT ON CLUSTER '{cluster}' SELECT ON logorhythms.* TO analyst_role"
    assert statements.index(revoke) > statements.index(grant)
    assert "export_audit" in DENIED_TABLES


def test_the_analyst_user_cannot_log_in_until_given_a_password_and_networks() -> None:
    user = next(s for s in _analyst_statements() if s.startswith("CREATE USER"))
    assert "IDENTIFIED WITH no_password HOST NONE" in user
    assert "SETTINGS PROFILE 'analyst_profile'" in user
