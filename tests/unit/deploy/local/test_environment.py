"""Which variables each service under `logorhythms up` receives."""

from __future__ import annotations

from pathlib import Path

from deploy.local.environment import consumer_env, loader_env, process_env, proxy_env

SHELL = {
    "PATH": "/usr/bin",
    "HOME": "/home/a",
    "LC_ALL": "C.UTF-8",
    "OPENAI_API_KEY": "sk-openai",
    "ANTHROPIC_API_KEY": "sk-ant-x",
    "GROQ_API_KEY": "gsk-x",
    "AWS_SECRET_ACCESS_KEY": "aws-x",
    "DD_API_KEY": "dd-x",
    "DD_AGENT_HOST": "127.0.0.1",
    "LOGORHYTHMS_FINGERPRINT_KEY": "fp-x",
    "LOGORHYTHMS_SQL_PORT": "9000",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "CLICKHOUSE_URL": "chdb:///d",
}


def test_consumers_get_no_provider_key_and_no_fingerprint_key() -> None:
    env = consumer_env(SHELL)
    assert not {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "DD_API_KEY"} & set(env)
    assert "LOGORHYTHMS_FINGERPRINT_KEY" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    for kept in ("PATH", "LC_ALL", "LOGORHYTHMS_SQL_PORT", "KAFKA_BOOTSTRAP_SERVERS",
                 "CLICKHOUSE_URL", "DD_AGENT_HOST"):  # fmt: skip
        assert env[kept] == SHELL[kept]


def test_proxy_gets_its_keys_but_no_stray_secret() -> None:
    env = proxy_env(SHELL)
    assert env["OPENAI_API_KEY"] == "sk-openai"
    assert env["LOGORHYTHMS_FINGERPRINT_KEY"] == "fp-x"
    assert "GROQ_API_KEY" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "CLICKHOUSE_URL" not in env
    assert "DD_API_KEY" not in env


def test_proxy_gets_the_keys_its_config_file_names(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[providers.groq]\nbase_url = "http://127.0.0.1:1"\napi_key_env = "GROQ_API_KEY"\n'
    )
    env = proxy_env({**SHELL, "LOGORHYTHMS_CONFIG": str(config)})
    assert env["GROQ_API_KEY"] == "gsk-x"
    assert "GROQ_API_KEY" not in consumer_env({**SHELL, "LOGORHYTHMS_CONFIG": str(config)})


def test_fake_upstream_and_broker_get_only_what_a_process_needs() -> None:
    assert process_env(SHELL) == {"PATH": "/usr/bin", "HOME": "/home/a", "LC_ALL": "C.UTF-8"}


def test_only_the_loader_gets_the_sql_password() -> None:
    shell = {**SHELL, "LOGORHYTHMS_SQL_PASSWORD": "sql-x"}
    assert loader_env(shell)["LOGORHYTHMS_SQL_PASSWORD"] == "sql-x"
    assert "LOGORHYTHMS_FINGERPRINT_KEY" not in loader_env(shell)
    assert "OPENAI_API_KEY" not in loader_env(shell)
    for env in (consumer_env(shell), proxy_env(shell), process_env(shell)):
        assert "LOGORHYTHMS_SQL_PASSWORD" not in env
