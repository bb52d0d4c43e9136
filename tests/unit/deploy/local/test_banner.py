"""The text `up` prints once everything is up."""

from __future__ import annotations

from pathlib import Path

from deploy.local.banner import DEFAULT_SQL_PORT, banner


def test_banner_points_clients_at_the_proxy_and_the_sql_endpoint(tmp_path: Path) -> None:
    text = banner(18080, DEFAULT_SQL_PORT, tmp_path)
    assert "OPENAI_BASE_URL=http://127.0.0.1:18080/v1" in text
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:18080 " in text
    assert f"http://127.0.0.1:{DEFAULT_SQL_PORT}/play" in text
    assert f"status --data-dir {tmp_path}" in text
    assert "LOGORHYTHMS_SQL_PORT=" not in text  # the default needs no variable


def test_a_custom_sql_port_is_named_in_the_sql_hint(tmp_path: Path) -> None:
    text = banner(18080, 18124, tmp_path)
    assert "LOGORHYTHMS_SQL_PORT=18124 .venv/bin/logorhythms sql" in text
