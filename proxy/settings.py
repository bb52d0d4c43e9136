"""The proxy's one frozen settings object, built from the environment in one place."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from proxy.errors import ConfigError


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
    models: tuple[str, ...] = ()
    bring_your_own_key: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxySettings:
    host: str = "127.0.0.1"
    port: int = 8080
    providers: tuple[Provider, ...] = ()
    default_provider: str = "openai"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "logorhythms.exchanges"
    # Keyed fingerprints of credentials: the same key gives the same fingerprint, so analysts can
    # group by caller, but without the key nothing can be reversed or brute-forced offline.
    fingerprint_key: Secret = field(default_factory=lambda: Secret(secrets.token_hex(32)))
    max_body_bytes: int = 10 * 1024 * 1024
    # Kafka's default message.max.bytes is 1 MiB; events stay under it with room for headers.
    max_event_bytes: int = 900 * 1024
    upstream_connect_timeout_s: float = 10.0
    # Time allowed between two reads from the upstream. There is deliberately no total timeout:
    # a healthy stream may run for many minutes.
    upstream_read_timeout_s: float = 120.0
    upstream_pool_size: int = 1000
    publish_queue_max: int = 100_000
    publish_shutdown_timeout_s: float = 10.0
    shutdown_timeout_s: float = 30.0
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Abuse limits (docs/OPERATIONS.md, "Security and abuse"). A connection must deliver a whole
    # request head within header_timeout_s of opening (or of its previous response): slowloris.
    header_timeout_s: float = 10.0
    max_header_count: int = 100
    max_header_bytes: int = 8190  # one header line; longer is refused (aiohttp's own default)
    # Exchanges handled at once before new ones get 503 + Retry-After (0 = no cap).
    max_in_flight: int = 4096
    # Per-client-IP token bucket; 0 switches rate limiting off (the default, so load tests from
    # one loopback address are not throttled). Production sets it: see docs/OPERATIONS.md.
    rate_limit_per_s: float = 0.0
    rate_limit_burst: int = 60
    rate_limit_max_clients: int = 100_000
    # Datadog (docs/OPERATIONS.md#datadog): DogStatsD metrics when an agent host is configured,
    # APM tracing when that or a trace agent URL is (and DD_TRACE_ENABLED is not false).
    dogstatsd_host: str | None = None
    dogstatsd_port: int = 8125
    tracing: bool = False
    # Off only to price the capture in benchmarks (LOGORHYTHMS_CAPTURE=off): nothing is published.
    capture: bool = True

    def __post_init__(self) -> None:
        if not self.providers:
            raise ConfigError(
                "no upstream provider is configured: set OPENAI_BASE_URL (and OPENAI_API_KEY)"
            )
        names = [p.name for p in self.providers]
        if self.default_provider not in names:
            raise ConfigError(
                f"default provider {self.default_provider!r} is not configured; "
                f"choose one of {', '.join(names)}"
            )
        if self.max_event_bytes >= 1024 * 1024:
            raise ConfigError("max_event_bytes must stay below Kafka's 1 MiB message limit")
        if self.header_timeout_s <= 0:
            raise ConfigError("header_timeout_s must be positive: it is the slowloris defence")
        if self.rate_limit_per_s > 0 and self.rate_limit_burst < 1:
            raise ConfigError("rate_limit_burst must be at least 1 when rate limiting is on")

    def provider(self, name: str) -> Provider:
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise KeyError(name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxySettings:
        env = os.environ if env is None else env
        providers = [
            Provider(
                name="openai",
                base_url=env.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/"),
                dialect="openai",
                api_key=_secret(env.get("OPENAI_API_KEY")),
            )
        ]
        if "ANTHROPIC_BASE_URL" in env or "ANTHROPIC_API_KEY" in env:
            providers.append(
                Provider(
                    name="anthropic",
                    base_url=env.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com").rstrip("/"),
                    dialect="anthropic",
                    api_key=_secret(env.get("ANTHROPIC_API_KEY")),
                )
            )
        fingerprint_key = env.get("LOGORHYTHMS_FINGERPRINT_KEY")
        return cls(
            host=env.get("LOGORHYTHMS_HOST", "127.0.0.1"),
            port=_int(env, "LOGORHYTHMS_PORT", 8080),
            providers=tuple(providers),
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            topic=env.get("LOGORHYTHMS_TOPIC", "logorhythms.exchanges"),
            fingerprint_key=Secret(fingerprint_key or secrets.token_hex(32)),
            dogstatsd_host=env.get("DD_AGENT_HOST") or None,
            dogstatsd_port=_int(env, "DD_DOGSTATSD_PORT", 8125),
            tracing=bool(env.get("DD_AGENT_HOST") or env.get("DD_TRACE_AGENT_URL"))
            and env.get("DD_TRACE_ENABLED", "true").lower() not in {"false", "0"},
            trusted_proxies=tuple(
                ipaddress.ip_network(cidr.strip(), strict=False)
                for cidr in env.get("LOGORHYTHMS_TRUSTED_PROXIES", "").split(",")
                if cidr.strip()
            ),
            capture=_on_off(env, "LOGORHYTHMS_CAPTURE", True),
        )


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
