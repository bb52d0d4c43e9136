"""Settings of the consumer services, built from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class SettingsError(Exception):
    retriable = False


DEFAULT_CLICKHOUSE_URL = "chdb://data/clickhouse"  # relative to the working directory
_EMBEDDED = "chdb://"


def is_embedded(url: str) -> bool:
    """True for the in-process engine (``chdb://PATH``), false for ``http(s)://`` servers."""
    return url.startswith(_EMBEDDED)


def embedded_path(url: str) -> Path:
    """The directory of a ``chdb://`` URL, absolute: ``chdb://data/x`` and ``chdb:///abs/x``."""
    return Path(url[len(_EMBEDDED) :] or "data/clickhouse").resolve()


def normalize_clickhouse_url(url: str) -> str:
    """Embedded URLs with an absolute path, which is the only form clickhouse-connect parses."""
    return f"{_EMBEDDED}{embedded_path(url)}" if is_embedded(url) else url


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSettings:
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "logorhythms.exchanges"
    group_id: str = "logorhythms-clickhouse"
    deadletter_topic: str = "logorhythms.exchanges.deadletter"
    batch_max_records: int = 20_000
    batch_max_bytes: int = 32 * 1024 * 1024
    # How long the first record of a batch may wait: bounds capture lag at low traffic.
    batch_max_age_s: float = 0.5
    retry_initial_backoff_s: float = 0.2
    retry_max_backoff_s: float = 10.0
    shutdown_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.batch_max_records < 1 or self.batch_max_bytes < 1:
            raise SettingsError("batch limits must be positive")
        if self.batch_max_age_s <= 0:
            raise SettingsError("LOGORHYTHMS_BATCH_MAX_AGE_S must be greater than zero")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoaderSettings:
    consumer: ConsumerSettings
    clickhouse_url: str = DEFAULT_CLICKHOUSE_URL
    sql_host: str = "127.0.0.1"
    sql_port: int = 8124

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LoaderSettings:
        env = os.environ if env is None else env
        topic = env.get("LOGORHYTHMS_TOPIC", "logorhythms.exchanges")
        return cls(
            consumer=ConsumerSettings(
                kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                topic=topic,
                group_id=env.get("LOGORHYTHMS_CLICKHOUSE_GROUP", "logorhythms-clickhouse"),
                deadletter_topic=env.get("LOGORHYTHMS_DEADLETTER_TOPIC", f"{topic}.deadletter"),
                batch_max_age_s=_float(env, "LOGORHYTHMS_BATCH_MAX_AGE_S", 0.5),
            ),
            clickhouse_url=normalize_clickhouse_url(
                env.get("CLICKHOUSE_URL", DEFAULT_CLICKHOUSE_URL)
            ),
            sql_port=int(env.get("LOGORHYTHMS_SQL_PORT", "8124")),
        )


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
