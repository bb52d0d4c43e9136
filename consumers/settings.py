"""Settings of the consumer services, built from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingsError(Exception):
    retriable = False


DEFAULT_CLICKHOUSE_URL = "chdb://data/clickhouse"  # relative to the working directory
_EMBEDDED = "chdb://"


def is_embedded(url: str) -> bool:
    """True for the in-process engine (``chdb://PATH``), false for ``http(s)://`` servers."""
    return url.startswith(_EMBEDDED)


def embedded_path(url: str) -> Path:
    """The directory of a ``chdb://`` URL, absolute: ``chdb://data/x`` and ``chdb:///abs/x``.

    A query string (``?database=name``, passed on to clickhouse-connect) is not part of the path.
    """
    path = url[len(_EMBEDDED) :].partition("?")[0]
    return Path(path or "data/clickhouse").resolve()


def normalize_clickhouse_url(url: str) -> str:
    """Embedded URLs with an absolute path, which is the only form clickhouse-connect parses."""
    if not is_embedded(url):
        return url
    query = url.partition("?")[2]
    return f"{_EMBEDDED}{embedded_path(url)}" + (f"?{query}" if query else "")


# Batches close at whichever limit comes first. Every insert into ClickHouse has a fixed cost
# (~20-40 ms of CPU in the embedded engine whatever its size) and makes a part to merge, so
# at steady load the loader aims at about one insert per table and second: a batch waits
# 0.6 s for more records, plus the 0.2-0.4 s the batch takes, a cycle of about a second; and
# it holds up to 50 000 records (about a second of the loader's full rate). The age is also
# most of the capture lag: a record waits 0.3 s on average and 0.6 s at most for its batch
# (0.8 s measured a p50 lag above the 0.7 s target; docs/OPERATIONS.md, "Batches and capture
# lag", and docs/PERFORMANCE.md have the measurements).
DEFAULT_BATCH_MAX_RECORDS = 50_000
DEFAULT_BATCH_MAX_AGE_S = 0.6


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSettings:
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "logorhythms.exchanges"
    group_id: str = "logorhythms-clickhouse"
    deadletter_topic: str = "logorhythms.exchanges.deadletter"
    batch_max_records: int = DEFAULT_BATCH_MAX_RECORDS
    batch_max_bytes: int = 32 * 1024 * 1024
    # How long the first record of a batch may wait: bounds capture lag at low traffic.
    batch_max_age_s: float = DEFAULT_BATCH_MAX_AGE_S
    retry_initial_backoff_s: float = 0.2
    retry_max_backoff_s: float = 10.0
    # One budget for every shutdown step (last batch, commit, closing the Kafka clients).
    shutdown_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.batch_max_records < 1 or self.batch_max_bytes < 1:
            raise SettingsError("batch limits must be positive")
        if self.batch_max_age_s <= 0:
            raise SettingsError("LOGORHYTHMS_BATCH_MAX_AGE_S must be greater than zero")

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, group_id: str, **overrides: Any
    ) -> ConsumerSettings:
        """What every consumer shares, from the environment; each service names its group."""
        topic = env.get("LOGORHYTHMS_TOPIC", "logorhythms.exchanges")
        overrides.setdefault(
            "batch_max_records",
            _int(env, "LOGORHYTHMS_BATCH_MAX_RECORDS", DEFAULT_BATCH_MAX_RECORDS),
        )
        return cls(
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            topic=topic,
            group_id=group_id,
            deadletter_topic=env.get("LOGORHYTHMS_DEADLETTER_TOPIC", f"{topic}.deadletter"),
            batch_max_age_s=_float(env, "LOGORHYTHMS_BATCH_MAX_AGE_S", DEFAULT_BATCH_MAX_AGE_S),
            **overrides,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoaderSettings:
    consumer: ConsumerSettings
    clickhouse_url: str = DEFAULT_CLICKHOUSE_URL
    sql_host: str = "127.0.0.1"
    sql_port: int = 8124
    # Pipeline metrics (lag, batch size, insert latency, dead letters) when an agent is configured.
    datadog: DatadogSettings | None = None
    # APM: continue the proxy's traces (Kafka headers) with one span per loaded exchange.
    tracing: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LoaderSettings:
        env = os.environ if env is None else env
        return cls(
            consumer=ConsumerSettings.from_env(
                env, group_id=env.get("LOGORHYTHMS_CLICKHOUSE_GROUP", "logorhythms-clickhouse")
            ),
            clickhouse_url=normalize_clickhouse_url(
                env.get("CLICKHOUSE_URL", DEFAULT_CLICKHOUSE_URL)
            ),
            sql_port=_int(env, "LOGORHYTHMS_SQL_PORT", 8124),
            datadog=DatadogSettings.from_env(env) if env.get("DD_AGENT_HOST") else None,
            tracing=tracing_configured(env),
        )


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class DatadogSettings:
    """Where the services send DogStatsD metrics; ddtrace reads its own DD_* variables."""

    agent_host: str = "127.0.0.1"
    dogstatsd_port: int = 8125
    # The DogStatsD client itself adds env/service/version tags from DD_ENV, DD_SERVICE, DD_VERSION.
    service: str = "logorhythms"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DatadogSettings:
        env = os.environ if env is None else env
        return cls(
            agent_host=env.get("DD_AGENT_HOST") or "127.0.0.1",
            dogstatsd_port=_int(env, "DD_DOGSTATSD_PORT", 8125),
            service=env.get("DD_SERVICE") or "logorhythms",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwarderSettings:
    """The Datadog forwarder: its own consumer group on the exchange topic."""

    consumer: ConsumerSettings
    datadog: DatadogSettings
    ml_app: str = "logorhythms"
    # An exchange with no completed event after this long is given up (a proxy crashed mid-way).
    open_max_age_s: float = 900.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ForwarderSettings:
        env = os.environ if env is None else env
        return cls(
            consumer=ConsumerSettings.from_env(
                env,
                group_id=env.get("LOGORHYTHMS_DATADOG_GROUP", "logorhythms-datadog"),
                batch_max_records=_int(env, "LOGORHYTHMS_DATADOG_BATCH_MAX_RECORDS", 5_000),
            ),
            datadog=DatadogSettings.from_env(env),
            ml_app=env.get("DD_LLMOBS_ML_APP") or "logorhythms",
            open_max_age_s=_float(env, "LOGORHYTHMS_DATADOG_OPEN_MAX_AGE_S", 900.0),
        )


def tracing_configured(env: Mapping[str, str]) -> bool:
    """APM is on when an agent is configured and DD_TRACE_ENABLED does not say otherwise."""
    agent = env.get("DD_AGENT_HOST") or env.get("DD_TRACE_AGENT_URL")
    return bool(agent) and env.get("DD_TRACE_ENABLED", "true").lower() not in {"false", "0"}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
