"""Settings of the consumer services, built from the environment in one place."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
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
# (CPU in the engine whatever its size, docs/PERFORMANCE.md) and makes a part to merge, so
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
    # Where the schema ids of Confluent-framed records are looked up (docs/EVENTS.md); None
    # when every producer writes single-object records.
    schema_registry_url: str | None = None

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
            schema_registry_url=env.get("LOGORHYTHMS_SCHEMA_REGISTRY_URL") or None,
            **overrides,
        )


class Secret:
    """A password: masked in logs and reprs, compared in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def matches(self, candidate: str) -> bool:
        return secrets.compare_digest(self._value.encode(), candidate.encode())

    def __repr__(self) -> str:
        return "Secret('**********')"


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlLimits:
    """Per-query limits of every analyst session on the SQL endpoint (docs/OPERATIONS.md)."""

    max_execution_time_s: int = 60
    max_memory_usage_bytes: int = 2 * 1024**3
    max_result_rows: int = 100_000_000
    max_result_bytes: int = 4 * 1024**3
    # Formats that cannot be streamed (Arrow, Parquet, JSON, Pretty...) are built in memory.
    max_buffered_result_bytes: int = 256 * 1024**2
    max_concurrent_queries: int = 4
    # How long a query waits for one of those slots before TOO_MANY_SIMULTANEOUS_QUERIES.
    queue_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "max_execution_time_s",
            "max_memory_usage_bytes",
            "max_result_rows",
            "max_result_bytes",
            "max_buffered_result_bytes",
            "max_concurrent_queries",
        ):
            if getattr(self, name) < 1:
                # 0 means "unlimited" to ClickHouse: never what an operator meant here.
                raise SettingsError(f"LOGORHYTHMS_SQL_{name.upper()} must be at least 1")

    def ceilings(self) -> dict[str, int]:
        return {
            "max_execution_time": self.max_execution_time_s,
            "max_memory_usage": self.max_memory_usage_bytes,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SqlLimits:
        d = cls()
        return cls(
            max_execution_time_s=_int(
                env, "LOGORHYTHMS_SQL_MAX_EXECUTION_TIME_S", d.max_execution_time_s
            ),
            max_memory_usage_bytes=_int(
                env, "LOGORHYTHMS_SQL_MAX_MEMORY_USAGE_BYTES", d.max_memory_usage_bytes
            ),
            max_result_rows=_int(env, "LOGORHYTHMS_SQL_MAX_RESULT_ROWS", d.max_result_rows),
            max_result_bytes=_int(env, "LOGORHYTHMS_SQL_MAX_RESULT_BYTES", d.max_result_bytes),
            max_buffered_result_bytes=_int(
                env, "LOGORHYTHMS_SQL_MAX_BUFFERED_RESULT_BYTES", d.max_buffered_result_bytes
            ),
            max_concurrent_queries=_int(
                env, "LOGORHYTHMS_SQL_MAX_CONCURRENT_QUERIES", d.max_concurrent_queries
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlSettings:
    """The analysts' SQL endpoint (embedded mode): where it listens and who may use it."""

    host: str = "127.0.0.1"
    port: int = 8124
    user: str = "default"
    password: Secret | None = None
    # Host names besides localhost and the bound address that clients may use in `Host`.
    allowed_hosts: tuple[str, ...] = ()
    max_query_bytes: int = 1024 * 1024
    limits: SqlLimits = field(default_factory=SqlLimits)

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check_exposure(self) -> None:
        """Refuse to listen beyond this machine without a password."""
        if not self.is_loopback() and self.password is None:
            raise SettingsError(
                f"LOGORHYTHMS_SQL_HOST={self.host} is reachable from other machines: set "
                "LOGORHYTHMS_SQL_PASSWORD (and LOGORHYTHMS_SQL_USER) or bind to 127.0.0.1"
            )

    def allowed_host_names(self) -> frozenset[str]:
        names = {"localhost", "127.0.0.1", "::1", *(h.lower() for h in self.allowed_hosts)}
        if self.host not in {"0.0.0.0", "::"}:  # noqa: S104 (a wildcard is no name)
            names.add(self.host.lower())
        return frozenset(names)

    def own_origins(self) -> frozenset[str]:
        origins = set()
        for name in self.allowed_host_names():
            shown = f"[{name}]" if ":" in name else name
            origins.add(f"http://{shown}:{self.port}")
            origins.add(f"https://{shown}:{self.port}")
        return frozenset(origins)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SqlSettings:
        password = env.get("LOGORHYTHMS_SQL_PASSWORD")
        return cls(
            host=env.get("LOGORHYTHMS_SQL_HOST") or "127.0.0.1",
            port=_int(env, "LOGORHYTHMS_SQL_PORT", 8124),
            user=env.get("LOGORHYTHMS_SQL_USER") or "default",
            password=Secret(password) if password else None,
            allowed_hosts=tuple(
                h.strip()
                for h in env.get("LOGORHYTHMS_SQL_ALLOWED_HOSTS", "").split(",")
                if h.strip()
            ),
            limits=SqlLimits.from_env(env),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoaderSettings:
    consumer: ConsumerSettings
    clickhouse_url: str = DEFAULT_CLICKHOUSE_URL
    sql: SqlSettings = field(default_factory=SqlSettings)
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
            sql=SqlSettings.from_env(env),
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
