"""Read the proxy's TOML config file (LOGORHYTHMS_CONFIG) into plain, type-checked values.

Strict on purpose: an unknown key is an error naming the key and the file, because a misspelt
timeout or provider field silently ignored is how a service ends up doing the wrong thing.
Keys are never in the file itself: each provider names the environment variable that holds it.
See deploy/config.example.toml for every key with its meaning. proxy.settings builds the
settings (and their providers) from what this returns; this module knows none of its types.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proxy.errors import ConfigError

_PROXY_KEYS = {
    "host": str,
    "port": int,
    "default_provider": str,
    "kafka_bootstrap_servers": str,
    "topic": str,
    "max_body_bytes": int,
    "max_event_bytes": int,
    "trusted_proxies": list,
    # Abuse limits: docs/OPERATIONS.md, "Security and abuse".
    "header_timeout_s": float,
    "max_header_count": int,
    "max_header_bytes": int,
    "body_first_byte_timeout_s": float,
    "body_read_timeout_s": float,
    "max_in_flight": int,
    "max_in_flight_per_client": int,
    "rate_limit_per_s": float,
    "rate_limit_burst": int,
    "rate_limit_max_clients": int,
    "event_loop": str,
}
_TIMEOUT_KEYS = {
    "connect_s": "upstream_connect_timeout_s",
    "first_byte_s": "upstream_first_byte_timeout_s",
    "between_chunks_s": "upstream_read_timeout_s",
    "total_s": "upstream_total_timeout_s",
    "client_write_s": "client_write_timeout_s",
}
_PROVIDER_KEYS = {
    "base_url": str,
    "dialect": str,
    "api_key_env": str,
    "models": list,
    "bring_your_own_key": bool,
}
_SECTIONS = {"proxy", "timeouts", "providers", "model_map"}


def load_config_file(
    path: Path, env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """ProxySettings keyword values, and each provider's Provider keyword values by name, as
    the file describes them. ``trusted_proxies`` stays a list of strings; a provider's
    ``api_key`` is the plain value of the variable its ``api_key_env`` names, or None."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    _no_unknown(doc, _SECTIONS, path, "")
    values: dict[str, Any] = {}
    proxy = _table(doc, "proxy", path)
    _no_unknown(proxy, set(_PROXY_KEYS), path, "proxy.")
    for key, kind in _PROXY_KEYS.items():
        if key in proxy:
            values[key] = _typed(proxy[key], kind, path, f"proxy.{key}")
    if "trusted_proxies" in values:
        values["trusted_proxies"] = [str(v) for v in values["trusted_proxies"]]
    timeouts = _table(doc, "timeouts", path)
    _no_unknown(timeouts, set(_TIMEOUT_KEYS), path, "timeouts.")
    for key, field_name in _TIMEOUT_KEYS.items():
        if key in timeouts:
            seconds = _typed(timeouts[key], float, path, f"timeouts.{key}")
            if seconds < 0:
                raise ConfigError(f"{path}: timeouts.{key} must be >= 0 seconds")
            # total_s = 0 means "no total timeout"; the others must be positive.
            if seconds == 0 and key != "total_s":
                raise ConfigError(f"{path}: timeouts.{key} must be more than 0 seconds")
            values[field_name] = seconds or None
    model_map = _table(doc, "model_map", path)
    values["model_map"] = {
        alias: _typed(target, str, path, f"model_map.{alias}")
        for alias, target in model_map.items()
    }
    providers: dict[str, dict[str, Any]] = {}
    for name, raw in _table(doc, "providers", path).items():
        where = f"providers.{name}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: {where} must be a table")
        _no_unknown(raw, set(_PROVIDER_KEYS), path, f"{where}.")
        if "base_url" not in raw:
            raise ConfigError(f"{path}: {where}.base_url is required")
        key_env = raw.get("api_key_env")
        api_key = env.get(_typed(key_env, str, path, f"{where}.api_key_env")) if key_env else None
        providers[name] = {
            "base_url": _typed(raw["base_url"], str, path, f"{where}.base_url").rstrip("/"),
            "dialect": _typed(raw.get("dialect", "openai"), str, path, f"{where}.dialect"),
            "api_key": api_key or None,
            "models": tuple(str(m) for m in _typed(raw.get("models", []), list, path, where)),
            "bring_your_own_key": _typed(
                raw.get("bring_your_own_key", False), bool, path, f"{where}.bring_your_own_key"
            ),
        }
    return values, providers


def _table(doc: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return table


def _no_unknown(table: dict[str, Any], known: set[str], path: Path, prefix: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{path}: unknown key {prefix}{key}; known keys here are: "
                f"{', '.join(sorted(known))}"
            )


def _typed(value: Any, kind: type, path: Path, where: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: {where} must be a {kind.__name__}, not {value!r}")
    return value
