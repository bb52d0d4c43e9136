"""What `logorhythms up` prints once everything is up: where to point clients and how to look."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_SQL_PORT", "banner"]

DEFAULT_SQL_PORT = 8124


def banner(proxy_port: int, sql_port: int, root: Path) -> str:
    base = f"http://127.0.0.1:{proxy_port}"
    # `logorhythms sql` finds a non-default endpoint through the same variable.
    sql_env = "" if sql_port == DEFAULT_SQL_PORT else f"LOGORHYTHMS_SQL_PORT={sql_port} "
    return "\n".join(
        (
            "",
            "Logorhythms is up.",
            f"  Point any OpenAI SDK at it:  OPENAI_BASE_URL={base}/v1",
            f"  or any Anthropic SDK:        ANTHROPIC_BASE_URL={base}   (docs/CLIENTS.md)",
            f"  Or curl:  curl {base}/v1/chat/completions -H 'Content-Type: application/json' \\",
            """    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'""",
            f"  Query what was captured: http://127.0.0.1:{sql_port}/play in a browser, any",
            f"  ClickHouse client on port {sql_port} (docs/ANALYSTS.md), or",
            f'    {sql_env}.venv/bin/logorhythms sql "SELECT request_id, model_requested, '
            "response_text",
            '      FROM exchanges ORDER BY received_at DESC LIMIT 5"',
            f"  Health: .venv/bin/logorhythms status --data-dir {root}",
            f"  Logs: {root / 'logs'}.  Stop everything: Ctrl-C",
            "",
        )
    )
