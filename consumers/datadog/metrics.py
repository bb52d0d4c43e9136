"""Every metric Logorhythms' consumers send to Datadog (the runner's own, from
``consumers/telemetry/metrics.py``, and the exchange metrics defined here), and the pure mapping of
exchanges to metric points.

Tag cardinality is bounded by construction: only the keys in ``TAG_KEYS`` exist, and every value
comes from a small fixed set (models outside ``KNOWN_MODELS`` fold into ``other``). Nothing that
identifies a caller or a request (IPs, request ids, keys, free text) can become a tag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from consumers.datadog.view import ExchangeView
from consumers.telemetry.metrics import RUNNER_METRICS, Kind, Metric, Point, make_point

_EXCHANGE_TAGS = ("model", "provider", "endpoint", "status_class", "stream", "outcome")

_EXCHANGE_METRICS = (
    Metric(name="logorhythms.exchange.count", kind=Kind.COUNT, tags=_EXCHANGE_TAGS,
           doc="Exchanges captured and forwarded (one per completed event)."),
    Metric(name="logorhythms.exchange.errors", kind=Kind.COUNT,
           tags=(*_EXCHANGE_TAGS, "error_type"),
           doc="Exchanges whose outcome is not ok (error_type folded to a bounded set)."),
    Metric(name="logorhythms.exchange.tokens_in", kind=Kind.COUNT, tags=_EXCHANGE_TAGS,
           doc="Prompt tokens the upstream reported (not sent when it reported none)."),
    Metric(name="logorhythms.exchange.tokens_out", kind=Kind.COUNT, tags=_EXCHANGE_TAGS,
           doc="Completion tokens the upstream reported."),
    Metric(name="logorhythms.exchange.bytes_in", kind=Kind.COUNT, tags=_EXCHANGE_TAGS,
           doc="Request body bytes received from clients."),
    Metric(name="logorhythms.exchange.bytes_out", kind=Kind.COUNT, tags=_EXCHANGE_TAGS,
           doc="Response bytes delivered to clients."),
    Metric(name="logorhythms.exchange.ttfb_ms", kind=Kind.DISTRIBUTION, tags=_EXCHANGE_TAGS,
           doc="Time from request received to the first upstream byte."),
    Metric(name="logorhythms.exchange.ttft_ms", kind=Kind.DISTRIBUTION, tags=_EXCHANGE_TAGS,
           doc="Time from request received to the first generated token."),
    Metric(name="logorhythms.exchange.duration_ms", kind=Kind.DISTRIBUTION,
           tags=_EXCHANGE_TAGS, doc="Total time from request received to the last byte."),
    Metric(name="logorhythms.datadog.open_exchanges", kind=Kind.GAUGE, tags=(),
           doc="Exchanges the Datadog forwarder holds, waiting for their completed event."),
    Metric(name="logorhythms.datadog.abandoned", kind=Kind.COUNT, tags=(),
           doc="Open exchanges given up on (no completed event within the age limit)."),
)  # fmt: skip

METRICS: dict[str, Metric] = {**RUNNER_METRICS, **{m.name: m for m in _EXCHANGE_METRICS}}

TAG_KEYS = frozenset(tag for metric in METRICS.values() for tag in metric.tags)

KNOWN_MODELS = (
    # Longest first, so "gpt-4o-mini" wins over "gpt-4o".
    "gpt-4o-mini", "gpt-4o", "gpt-4.1-nano", "gpt-4.1-mini", "gpt-4.1", "gpt-4-turbo", "gpt-4",
    "gpt-3.5-turbo", "gpt-5-nano", "gpt-5-mini", "gpt-5", "o1-mini", "o1", "o3-mini", "o3",
    "o4-mini", "text-embedding-3-small", "text-embedding-3-large",
    "claude-3-5-haiku", "claude-3-5-sonnet", "claude-3-7-sonnet", "claude-3-haiku",
    "claude-3-opus", "claude-sonnet-4", "claude-opus-4", "claude-haiku-4",
)  # fmt: skip
KNOWN_PROVIDERS = frozenset({"openai", "anthropic", "azure", "google", "mistral", "bedrock"})
KNOWN_ENDPOINTS = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/messages",
})  # fmt: skip
KNOWN_OUTCOMES = frozenset({
    "ok", "upstream_http_error", "upstream_error_in_stream", "upstream_incomplete",
    "upstream_timeout", "upstream_disconnect", "connect_error", "client_disconnect",
    "client_write_timeout",
    "rejected", "proxy_error",
})  # fmt: skip
_ERROR_TYPE = re.compile(r"^(http_[1-5]\d\d|[A-Za-z_]{1,40})$")
_MAX_ERROR_TYPES = 64
OTHER = "other"
_MODEL_SEPARATOR = re.compile(r"[-.:@/]")


def fold_model(model: str) -> str:
    """The model family, from a bounded set: dated snapshots fold to their family, the rest to
    ``other`` (``gpt-4o-2024-08-06`` → ``gpt-4o``, ``my-finetune`` → ``other``)."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    for known in KNOWN_MODELS:
        if name == known:
            return known
        if name.startswith(known) and _MODEL_SEPARATOR.match(name[len(known)]):
            rest = name[len(known) + 1 :]
            # A snapshot suffix (date, "latest", "preview"), not another family such as -mini.
            if rest[:1].isdigit() or rest.startswith(("latest", "preview")):
                return known
    return OTHER


def _one_of(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "none"


class ErrorTypes:
    """Folds error types to a bounded set: the first ``_MAX_ERROR_TYPES`` well-formed ones seen
    keep their name, anything else is ``other``. One instance per process."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def fold(self, error_type: str) -> str:
        if not _ERROR_TYPE.match(error_type):
            return OTHER
        if error_type in self._seen:
            return error_type
        if len(self._seen) >= _MAX_ERROR_TYPES:
            return OTHER
        self._seen.add(error_type)
        return error_type


def tags(values: Mapping[str, str]) -> tuple[str, ...]:
    """``key:value`` tags, sorted; a key outside the allow-list is a programming error."""
    unknown = set(values) - TAG_KEYS
    if unknown:
        raise ValueError(f"tag keys {sorted(unknown)} are not in the allow-list")
    return tuple(sorted(f"{k}:{v}" for k, v in values.items()))


def _point(name: str, value: float, tag_values: Mapping[str, str]) -> Point:
    return make_point(METRICS[name], value, tag_values)


def exchange_points(view: ExchangeView, error_types: ErrorTypes) -> list[Point]:
    base = {
        "model": fold_model(view.model),
        "provider": _one_of(view.provider, KNOWN_PROVIDERS),
        "endpoint": _one_of(view.endpoint, KNOWN_ENDPOINTS),
        "status_class": status_class(view.status),
        "stream": "true" if view.stream else "false",
        "outcome": _one_of(view.outcome, KNOWN_OUTCOMES),
    }
    points = [
        _point("logorhythms.exchange.count", 1, base),
        _point("logorhythms.exchange.bytes_in", view.bytes_in, base),
        _point("logorhythms.exchange.bytes_out", view.bytes_out, base),
        _point("logorhythms.exchange.duration_ms", view.duration_ns / 1e6, base),
    ]
    if view.outcome != "ok":
        error_tags = {**base, "error_type": error_types.fold(view.error_type or view.outcome)}
        points.append(_point("logorhythms.exchange.errors", 1, error_tags))
    if view.ttfb_ns is not None:
        points.append(_point("logorhythms.exchange.ttfb_ms", view.ttfb_ns / 1e6, base))
    if view.ttft_ns is not None:
        points.append(_point("logorhythms.exchange.ttft_ms", view.ttft_ns / 1e6, base))
    if view.prompt_tokens is not None:
        points.append(_point("logorhythms.exchange.tokens_in", view.prompt_tokens, base))
    if view.completion_tokens is not None:
        points.append(_point("logorhythms.exchange.tokens_out", view.completion_tokens, base))
    return points


def point(name: str, value: float, **tag_values: str) -> Point:
    """Any registered metric; the tag keys must be exactly the metric's."""
    return _point(name, value, tag_values)
