"""deploy/clickhouse/exporter.sql grants the export tools the least they need: SELECT on the
captured tables, INSERT on the audit trail, nothing else."""

from __future__ import annotations

from pathlib import Path

from consumers.clickhouse.migrate import load_migrations

EXPORTER_DDL = Path(__file__).resolve().parents[4] / "deploy" / "clickhouse" / "exporter.sql"


def statements() -> list[str]:
    text = EXPORTER_DDL.read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [" ".join(s.split()) for s in text.split(";") if s.strip()]


def test_grants_are_select_on_data_and_select_insert_on_the_audit_trail_only() -> None:
    grants = {
        s.removeprefix("GRANT ON CLUSTER '{cluster}' ")
        for s in statements()
        if s.startswith("GRANT") and "TO exporter_role" in s
    }
    tables = {
        s.split()[5]
        for m in load_migrations()
        for s in m.statements
        if s.startswith("CREATE TABLE IF NOT EXISTS")
    }
    data_tables = tables - {"export_audit"}
    assert data_tables >= {"requests_raw", "chunks_raw", "completions_raw", "exchanges"}
    expected = {f"SELECT ON logorhythms.{t} TO exporter_role" for t in data_tables}
    expected |= {
        "SELECT ON logorhythms.schema_migrations TO exporter_role",
        "SELECT, INSERT ON logorhythms.export_audit TO exporter_role",
    }
    assert grants == expected


def test_the_role_starts_from_nothing_and_the_user_cannot_log_in_unconfigured() -> None:
    joined = "\n".join(statements())
    assert "REVOKE ON CLUSTER '{cluster}' ALL ON *.* FROM exporter_role" in joined
    assert "IDENTIFIED WITH no_password HOST NONE" in joined
    assert "allow_ddl = 0 CONST" in joined
    for forbidden in ("ALTER ON", "DELETE", "TRUNCATE", "DROP", "SOURCES", "ALL ON logorhythms"):
        assert forbidden not in joined.replace("ALTER USER", ""), forbidden
