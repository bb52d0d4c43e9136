"""Which environment variables each service under `logorhythms up` receives (pure).

An allow-list per service, not a deny-list: a secret nobody thought of (a provider key named in
the proxy's config file, a cloud credential in the operator's shell) reaches no service that
does not name it. Provider keys and the fingerprint key go to the proxy only; the loader and the
forwarder get what they read (Kafka, ClickHouse, Datadog's agent address, our own knobs); the
fake upstream and the broker get nothing but what a process needs to run.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

# What any Python process needs to start, find its files and speak the locale.
_PROCESS = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
        "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR", "JAVA_HOME", "LOGORHYTHMS_CACHE_DIR",
    }
)  # fmt: skip
_PROCESS_PREFIXES = ("LC_", "PYTHON")

# Secrets of ours that only the proxy reads.
PROXY_ONLY = frozenset({"LOGORHYTHMS_FINGERPRINT_KEY", "LOGORHYTHMS_CONFIG"})
# ... and the one only the loader reads (its SQL endpoint's password).
LOADER_ONLY = frozenset({"LOGORHYTHMS_SQL_PASSWORD"})

# Datadog's agent address and tags (no keys: the services talk to a local agent, never to
# Datadog's API, so DD_API_KEY stays with the agent).
_DATADOG = frozenset(
    {
        "DD_AGENT_HOST", "DD_DOGSTATSD_PORT", "DD_TRACE_AGENT_URL", "DD_TRACE_AGENT_PORT",
        "DD_TRACE_ENABLED", "DD_ENV", "DD_SERVICE", "DD_VERSION", "DD_TAGS", "DD_LLMOBS_ML_APP",
        "DD_LLMOBS_ENABLED",
    }
)  # fmt: skip

_CONSUMER = frozenset({"KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL"})
_PROXY = frozenset(
    {
        "KAFKA_BOOTSTRAP_SERVERS", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
        "https_proxy", "no_proxy",
    }
)  # fmt: skip


def process_env(env: Mapping[str, str]) -> dict[str, str]:
    """What the fake upstream and the Kafka broker get: only what a process needs to run."""
    return {k: v for k, v in env.items() if k in _PROCESS or k.startswith(_PROCESS_PREFIXES)}


def _ours(env: Mapping[str, str]) -> dict[str, str]:
    private = PROXY_ONLY | LOADER_ONLY
    return {k: v for k, v in env.items() if k.startswith("LOGORHYTHMS_") and k not in private}


def consumer_env(env: Mapping[str, str]) -> dict[str, str]:
    """The forwarder's environment: no provider key, no fingerprint key, no SQL password."""
    return {
        **process_env(env),
        **_ours(env),
        **{k: v for k, v in env.items() if k in _CONSUMER or k in _DATADOG},
    }


def loader_env(env: Mapping[str, str]) -> dict[str, str]:
    """The loader's environment: the forwarder's, plus its SQL endpoint's password."""
    return {**consumer_env(env), **{k: v for k, v in env.items() if k in LOADER_ONLY}}


def proxy_env(env: Mapping[str, str]) -> dict[str, str]:
    """The proxy's environment: ours, the providers' (and the keys its config file names)."""
    wanted = _PROXY | _DATADOG | PROXY_ONLY | config_key_names(env)
    return {**process_env(env), **_ours(env), **{k: v for k, v in env.items() if k in wanted}}


def config_key_names(env: Mapping[str, str]) -> frozenset[str]:
    """The variables the proxy's config file (LOGORHYTHMS_CONFIG) reads provider keys from.

    A file that cannot be read names none here; the proxy itself then reports the problem.
    """
    path = env.get("LOGORHYTHMS_CONFIG")
    if not path:
        return frozenset()
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return frozenset()
    providers = doc.get("providers")
    if not isinstance(providers, dict):
        return frozenset()
    return frozenset(
        table["api_key_env"]
        for table in providers.values()
        if isinstance(table, dict) and isinstance(table.get("api_key_env"), str)
    )
