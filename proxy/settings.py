"""The proxy's one frozen settings object, built in one place from the TOML file and environment."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from proxy.configfile import load_config_file
from proxy.errors import ConfigError
from proxy.eventloop import EVENT_LOOPS
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES, MAX_EVENT_OVERHEAD_BYTES

DIALECTS = ("openai", "anthropic")
KAFKA_COMPRESSIONS = ("zstd", "lz4", "gzip", "none")  # what aiokafka can do with our dependencies
# Where the Kafka client runs: on the proxy's event loop, or in a producer process per worker
# (proxy/process_publisher.py, docs/decisions/0019-the-loops-stalls-measured.md).
PRODUCERS = ("inline", "process")
KAFKA_FRAMINGS = ("single-object", "confluent")
CONFIG_ENV = "LOGORHYTHMS_CONFIG"
_MAX_EVENT_BYTES = KAFKA_MAX_MESSAGE_BYTES - MAX_EVENT_OVERHEAD_BYTES
# A 32 MiB body whole, and 4 KiB for the event's other fields (proxy.exchange.EventRecorder).
DEFAULT_MAX_EVENT_BYTES = 32 * 1024 * 1024 + 4096


class Secret:
    """A string that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    """One upstream LLM API the proxy can route to."""

    name: str
    base_url: str
    dialect: str = "openai"
    api_key: Secret | None = None
    # The models this provider serves. Empty means "any model": the provider is a catch-all for
    # its dialect, and unknown names are left for it to reject.
    models: tuple[str, ...] = ()
    # Forward the client's own key (when it sends one) instead of the service's.
    bring_your_own_key: bool = False

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ConfigError(
                f"provider {self.name!r}: dialect {self.dialect!r} is not one of "
                f"{', '.join(DIALECTS)}"
            )
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"provider {self.name!r}: base_url {self.base_url!r} must start with "
                "http:// or https://"
            )
        if "/" in self.name or not self.name:
            raise ConfigError(f"provider name {self.name!r} must be non-empty and without '/'")

    def serves(self, model: str) -> bool:
        return not self.models or model in self.models


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxySettings:
    host: str = "127.0.0.1"
    port: int = 8080
    providers: tuple[Provider, ...] = ()
    # The provider a request goes to when neither the model map nor a `provider/` prefix names
    # one. For the other dialect, the first provider speaking it is the default.
    default_provider: str = "openai"
    # Model aliases: the name a client sends -> "provider/model" sent upstream.
    model_map: Mapping[str, str] = field(default_factory=dict)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "logorhythms.exchanges"
    # Keyed fingerprints of credentials: the same key gives the same fingerprint, so analysts can
    # group by caller, but without the key nothing can be reversed or brute-forced offline.
    fingerprint_key: Secret = field(default_factory=lambda: Secret(secrets.token_hex(32)))
    # Anthropic accepts 32 MB requests; a body this large is still captured whole.
    max_body_bytes: int = 32 * 1024 * 1024
    # The largest event: a body (request, or one upstream read) up to this less 4 KiB is stored
    # whole, a larger one as its first part with its size and SHA-256. Kafka is configured for
    # events this large (schemas/limits.py).
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    upstream_connect_timeout_s: float = 10.0
    # From sending the request to the upstream's response head. A non-streamed answer arrives
    # whole, so this is how long a slow generation may take.
    upstream_first_byte_timeout_s: float = 600.0
    # Time allowed between two reads from the upstream.
    upstream_read_timeout_s: float = 120.0
    # None means no total timeout, the default: a healthy stream may run for many minutes.
    upstream_total_timeout_s: float | None = None
    # How long one write to the client may wait for it to read before the client is dropped.
    client_write_timeout_s: float = 60.0
    upstream_pool_size: int = 1000
    # Events waiting for Kafka in memory; beyond this they spill to the journal.
    publish_queue_max: int = 100_000
    # Deadline for every aiokafka call (start, send, delivery), which can hang without one.
    kafka_timeout_s: float = 10.0
    # How long the publisher gathers a batch, and how it is compressed: the proxy's CPU per event
    # falls as batches grow (docs/decisions/0007-own-linger-and-partitioner.md); the linger adds
    # to capture lag, never to a client's response. zstd (level 3) costs less CPU than aiokafka's
    # lz4 (level 9) and makes smaller batches (docs/decisions/0008-zstd-compression.md).
    kafka_linger_ms: int = 50
    kafka_compression: str = "zstd"
    producer: str = "inline"
    # How a record's value names its writer schema: Avro single-object encoding (the default, no
    # registry needed) or Confluent framing with ids from the schema registry at
    # schema_registry_url, for readers that only read that (docs/EVENTS.md, "Outside readers").
    kafka_framing: str = "single-object"
    schema_registry_url: str | None = None
    # After in-flight exchanges finished: how long Kafka may take to acknowledge the rest before
    # it stays in the journal for the next start.
    publish_shutdown_timeout_s: float = 10.0
    # How long in-flight exchanges may run after SIGTERM (aiohttp's shutdown_timeout).
    shutdown_timeout_s: float = 30.0
    journal_dir: str = "./data/journal"
    journal_max_bytes: int = 1024**3
    journal_segment_bytes: int = 128 * 1024**2
    # The journal is fsynced this often: a machine crash loses at most this much of the spill.
    journal_fsync_interval_ms: int = 200
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Abuse limits (docs/OPERATIONS.md, "Security and abuse"). A connection must deliver a whole
    # request head within header_timeout_s of opening (or of its previous response): slowloris.
    header_timeout_s: float = 10.0
    max_header_count: int = 100
    max_header_bytes: int = 8190  # one header line; longer is refused (aiohttp's own default)
    # Once the head is in: how long the body's first byte may take, then each later read of it.
    # A client that stalls mid-upload gets 408 and is disconnected instead of holding a slot.
    body_first_byte_timeout_s: float = 30.0
    body_read_timeout_s: float = 30.0
    # Exchanges handled at once before new ones get 503 + Retry-After (0 = no cap).
    max_in_flight: int = 4096
    # Exchanges one client IP (resolved through trusted_proxies) may have in flight before its
    # next ones get 429 + Retry-After, so that one address cannot take every slot (0 = no cap).
    max_in_flight_per_client: int = 256
    # Per-client-IP token bucket; 0 switches rate limiting off (the default, so load tests from
    # one loopback address are not throttled). Production sets it: see docs/OPERATIONS.md.
    rate_limit_per_s: float = 0.0
    rate_limit_burst: int = 60
    rate_limit_max_clients: int = 100_000
    # Datadog (docs/OPERATIONS.md#datadog): DogStatsD metrics when an agent host is configured,
    # APM tracing when that or a trace agent URL is (and DD_TRACE_ENABLED is not false).
    dogstatsd_host: str | None = None
    dogstatsd_port: int = 8125
    # How often the proxy's counters and loop-lag window go to DogStatsD.
    metrics_interval_s: float = 10.0
    # The loop-lag monitor's probe (proxy/looplag.py): one timer every interval; 0 switches it off.
    loop_probe_interval_ms: float = 20.0
    tracing: bool = False
    # Off only to price the capture in benchmarks (LOGORHYTHMS_CAPTURE=off): nothing is published.
    capture: bool = True
    # Proxy processes sharing the port (SO_REUSEPORT) under one supervisor (proxy/supervisor.py).
    # Each has its own Kafka producer and journal; limits such as max_in_flight are per process.
    workers: int = 1
    # The asyncio event loop implementation: "uvloop" (falls back where not installed) or
    # "asyncio" (proxy/eventloop.py).
    event_loop: str = "uvloop"

    def __post_init__(self) -> None:
        if not self.providers:
            raise ConfigError(
                "no upstream provider is configured: set OPENAI_BASE_URL (and OPENAI_API_KEY)"
            )
        names = [p.name for p in self.providers]
        if self.default_provider not in names:
            raise ConfigError(
                f"default provider {self.default_provider!r} is not configured; set "
                f"default_provider ([proxy] in the config file) to one of {', '.join(names)}"
            )
        if self.journal_segment_bytes > self.journal_max_bytes:
            raise ConfigError(
                "LOGORHYTHMS_JOURNAL_SEGMENT_BYTES must not exceed LOGORHYTHMS_JOURNAL_MAX_BYTES"
            )
        if self.journal_segment_bytes < 2 * self.max_event_bytes:
            raise ConfigError(
                "LOGORHYTHMS_JOURNAL_SEGMENT_BYTES must hold at least two of the largest events "
                f"({2 * self.max_event_bytes} bytes)"
            )
        if self.journal_fsync_interval_ms < 1 or self.kafka_timeout_s <= 0:
            raise ConfigError(
                "LOGORHYTHMS_JOURNAL_FSYNC_MS and LOGORHYTHMS_KAFKA_TIMEOUT_S must be positive"
            )
        if self.kafka_linger_ms < 0 or self.kafka_compression not in KAFKA_COMPRESSIONS:
            raise ConfigError(
                "LOGORHYTHMS_KAFKA_LINGER_MS must be 0 or more and LOGORHYTHMS_KAFKA_COMPRESSION "
                f"one of {', '.join(KAFKA_COMPRESSIONS)}"
            )
        if self.producer not in PRODUCERS:
            raise ConfigError(
                f"LOGORHYTHMS_PRODUCER is {self.producer!r}; use one of {', '.join(PRODUCERS)}"
            )
        if self.kafka_framing not in KAFKA_FRAMINGS:
            raise ConfigError(
                f"LOGORHYTHMS_KAFKA_FRAMING is {self.kafka_framing!r}; use one of "
                f"{', '.join(KAFKA_FRAMINGS)}"
            )
        if self.kafka_framing == "confluent" and not self.schema_registry_url:
            raise ConfigError(
                "LOGORHYTHMS_KAFKA_FRAMING=confluent needs LOGORHYTHMS_SCHEMA_REGISTRY_URL, the "
                "Confluent-compatible API of a schema registry (for Apicurio Registry: "
                "http://HOST:PORT/apis/ccompat/v7)"
            )
        if not 64 * 1024 <= self.max_event_bytes <= _MAX_EVENT_BYTES:
            raise ConfigError(
                f"max_event_bytes must be between 65536 and {_MAX_EVENT_BYTES} bytes, the Kafka "
                "message limit less room for the event's other fields"
            )
        if self.metrics_interval_s <= 0 or self.loop_probe_interval_ms < 0:
            raise ConfigError(
                "LOGORHYTHMS_METRICS_INTERVAL_S must be positive and LOGORHYTHMS_LOOP_PROBE_MS "
                "0 (off) or more"
            )
        if self.header_timeout_s <= 0:
            raise ConfigError("header_timeout_s must be positive: it is the slowloris defence")
        if self.body_first_byte_timeout_s <= 0 or self.body_read_timeout_s <= 0:
            raise ConfigError(
                "body_first_byte_timeout_s and body_read_timeout_s "
                "(LOGORHYTHMS_BODY_FIRST_BYTE_TIMEOUT_S, LOGORHYTHMS_BODY_READ_TIMEOUT_S) "
                "must be positive: they end slow uploads"
            )
        if self.max_in_flight < 0 or self.max_in_flight_per_client < 0:
            raise ConfigError(
                "max_in_flight and max_in_flight_per_client (LOGORHYTHMS_MAX_IN_FLIGHT_PER_CLIENT) "
                "must be 0 (no cap) or more"
            )
        if self.event_loop not in EVENT_LOOPS:
            raise ConfigError(
                f"event_loop {self.event_loop!r} is not known; use one of {', '.join(EVENT_LOOPS)}"
            )
        if self.rate_limit_per_s > 0 and self.rate_limit_burst < 1:
            raise ConfigError("rate_limit_burst must be at least 1 when rate limiting is on")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1 (LOGORHYTHMS_WORKERS or --workers)")
        if self.workers > 1 and self.port == 0:
            raise ConfigError(
                "several workers need a fixed port to share: set LOGORHYTHMS_PORT (or --port)"
            )
        if len(set(names)) != len(names):
            raise ConfigError(f"provider names must be unique; got {', '.join(names)}")
        for alias, target in self.model_map.items():
            provider, sep, model = target.partition("/")
            if not sep or not model or provider not in names:
                raise ConfigError(
                    f"model_map[{alias!r}] = {target!r} must be 'provider/model' with one of the "
                    f"configured providers: {', '.join(names)}"
                )

    def provider(self, name: str) -> Provider:
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise KeyError(name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxySettings:
        """Settings from the TOML file named by LOGORHYTHMS_CONFIG (if any), then the environment.

        The conventional variables win over the file: OPENAI_BASE_URL / OPENAI_API_KEY and
        ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY override (or add) the providers named openai and
        anthropic, so a single-provider setup needs no file at all.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        providers: dict[str, Provider] = {}
        if env.get(CONFIG_ENV):
            path = Path(env[CONFIG_ENV])
            values, in_file = load_config_file(path, env)
            if "trusted_proxies" in values:
                values["trusted_proxies"] = parse_networks(
                    values["trusted_proxies"], f"{path}: proxy.trusted_proxies"
                )
            for name, fields in in_file.items():
                secret = _secret(fields.pop("api_key"))
                providers[name] = Provider(name=name, api_key=secret, **fields)
        else:
            providers["openai"] = Provider(name="openai", base_url="https://api.openai.com/v1")
        for name, dialect, default_url in (
            ("openai", "openai", "https://api.openai.com/v1"),
            ("anthropic", "anthropic", "https://api.anthropic.com"),
        ):
            prefix = name.upper()
            base_url, api_key = env.get(f"{prefix}_BASE_URL"), _secret(env.get(f"{prefix}_API_KEY"))
            if base_url is None and api_key is None:
                continue
            provider = providers.get(name) or Provider(
                name=name, base_url=default_url, dialect=dialect
            )
            providers[name] = replace(
                provider,
                base_url=(base_url or provider.base_url).rstrip("/"),
                api_key=api_key or provider.api_key,
            )
        fingerprint_key = env.get("LOGORHYTHMS_FINGERPRINT_KEY")
        if fingerprint_key:
            values["fingerprint_key"] = Secret(fingerprint_key)
        for name, key in (("LOGORHYTHMS_HOST", "host"), ("KAFKA_BOOTSTRAP_SERVERS",
                          "kafka_bootstrap_servers"), ("LOGORHYTHMS_TOPIC", "topic")):  # fmt: skip
            if env.get(name):
                values[key] = env[name]
        # Datadog's own variables (DogStatsD metrics, APM tracing).
        values["dogstatsd_host"] = env.get("DD_AGENT_HOST") or None
        values["dogstatsd_port"] = _int(env, "DD_DOGSTATSD_PORT", 8125)
        values["tracing"] = bool(env.get("DD_AGENT_HOST") or env.get("DD_TRACE_AGENT_URL")) and (
            env.get("DD_TRACE_ENABLED", "true").lower() not in {"false", "0"}
        )
        # Durability: the publisher's deadlines and the journal (docs/OPERATIONS.md, Guarantees).
        for name, key, parse in (
            ("LOGORHYTHMS_PUBLISH_QUEUE_MAX", "publish_queue_max", _int),
            ("LOGORHYTHMS_KAFKA_TIMEOUT_S", "kafka_timeout_s", _float),
            ("LOGORHYTHMS_KAFKA_LINGER_MS", "kafka_linger_ms", _int),
            ("LOGORHYTHMS_PUBLISH_SHUTDOWN_TIMEOUT_S", "publish_shutdown_timeout_s", _float),
            ("LOGORHYTHMS_SHUTDOWN_TIMEOUT_S", "shutdown_timeout_s", _float),
            ("LOGORHYTHMS_JOURNAL_MAX_BYTES", "journal_max_bytes", _int),
            ("LOGORHYTHMS_JOURNAL_SEGMENT_BYTES", "journal_segment_bytes", _int),
            ("LOGORHYTHMS_JOURNAL_FSYNC_MS", "journal_fsync_interval_ms", _int),
            # Admission (docs/OPERATIONS.md, "Security and abuse").
            ("LOGORHYTHMS_BODY_FIRST_BYTE_TIMEOUT_S", "body_first_byte_timeout_s", _float),
            ("LOGORHYTHMS_BODY_READ_TIMEOUT_S", "body_read_timeout_s", _float),
            ("LOGORHYTHMS_MAX_IN_FLIGHT_PER_CLIENT", "max_in_flight_per_client", _int),
            # Telemetry (docs/OPERATIONS.md, "Metrics" and "The event loop").
            ("LOGORHYTHMS_METRICS_INTERVAL_S", "metrics_interval_s", _float),
            ("LOGORHYTHMS_LOOP_PROBE_MS", "loop_probe_interval_ms", _float),
        ):
            if env.get(name):
                values[key] = parse(env, name, 0)
        if env.get("LOGORHYTHMS_KAFKA_COMPRESSION"):
            values["kafka_compression"] = env["LOGORHYTHMS_KAFKA_COMPRESSION"].strip().lower()
        if env.get("LOGORHYTHMS_PRODUCER"):
            values["producer"] = env["LOGORHYTHMS_PRODUCER"].strip().lower()
        if env.get("LOGORHYTHMS_KAFKA_FRAMING"):
            values["kafka_framing"] = env["LOGORHYTHMS_KAFKA_FRAMING"].strip().lower()
        if env.get("LOGORHYTHMS_SCHEMA_REGISTRY_URL"):
            values["schema_registry_url"] = env["LOGORHYTHMS_SCHEMA_REGISTRY_URL"].strip()
        if env.get("LOGORHYTHMS_JOURNAL_DIR"):
            values["journal_dir"] = env["LOGORHYTHMS_JOURNAL_DIR"]
        if env.get("LOGORHYTHMS_CAPTURE"):
            values["capture"] = _on_off(env, "LOGORHYTHMS_CAPTURE", True)
        if env.get("LOGORHYTHMS_EVENT_LOOP"):
            values["event_loop"] = env["LOGORHYTHMS_EVENT_LOOP"].strip().lower()
        if env.get("LOGORHYTHMS_PORT"):
            values["port"] = _int(env, "LOGORHYTHMS_PORT", 8080)
        if env.get("LOGORHYTHMS_WORKERS"):
            values["workers"] = parse_workers(env["LOGORHYTHMS_WORKERS"], "LOGORHYTHMS_WORKERS")
        if env.get("LOGORHYTHMS_TRUSTED_PROXIES"):
            values["trusted_proxies"] = parse_networks(
                env["LOGORHYTHMS_TRUSTED_PROXIES"].split(","), "LOGORHYTHMS_TRUSTED_PROXIES"
            )
        return cls(providers=tuple(providers.values()), **values)


def parse_networks(
    cidrs: list[str], where: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(
            ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip()
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}; give addresses or CIDR networks") from None


def parse_workers(raw: str, where: str) -> int:
    """A number of proxy processes: a whole number from 1, or ``auto`` for one per CPU this
    process may run on (its affinity mask, which containers and taskset narrow)."""
    value = raw.strip().lower()
    if value == "auto":
        return len(os.sched_getaffinity(0))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(
            f"{where}={raw!r} must be a whole number of processes (1 or more) or auto"
        )
    return count


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None


def _on_off(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"on", "true", "1"}:
        return True
    if raw in {"off", "false", "0"}:
        return False
    raise ConfigError(f"{name}={raw!r} must be on or off")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
