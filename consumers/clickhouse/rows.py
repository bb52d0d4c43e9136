"""Pure mapping of decoded events to ClickHouse rows (raw layer and exchange layer)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from consumers.exchange.assemble import Assembled, ChunkIn, assemble, final_outcome
from consumers.exchange.request import parse_request
from consumers.exchange.usage import estimate as estimate_usage

REQUEST_COLUMNS = (
    "request_id", "received_at", "method", "path", "query", "headers", "peer_ip",
    "forwarded_for", "client_ip", "user_agent", "client_key_fingerprint", "body", "body_size",
    "body_truncated", "body_sha256", "model_requested", "stream", "endpoint", "dialect",
    "provider", "upstream_url", "model_sent", "proxy_instance", "kafka_partition", "kafka_offset",
)  # fmt: skip
CHUNK_COLUMNS = (
    "request_id", "seq", "offset_ns", "data", "size", "truncated", "delivered",
    "kafka_partition", "kafka_offset",
)  # fmt: skip
COMPLETED_COLUMNS = (
    "request_id", "completed_at", "status", "outcome", "error_type", "error_message",
    "upstream_status", "response_headers", "ttfb_ns", "duration_ns", "bytes_in", "bytes_out",
    "chunk_count", "kafka_partition", "kafka_offset",
)  # fmt: skip
EXCHANGE_COLUMNS = (
    "request_id", "received_at", "completed_at", "method", "path", "endpoint", "dialect",
    "provider", "upstream_url", "model_requested", "model_sent", "model_responded", "stream",
    "peer_ip", "forwarded_for", "client_ip", "user_agent", "client_key_fingerprint",
    "request_headers", "response_headers", "upstream_request_id", "request_body",
    "request_body_size", "request_body_truncated", "request_json_valid", "request_utf8_valid",
    "request_params", "temperature", "top_p", "max_tokens", "n", "response_format",
    "tools_count", "tools", "system_prompt", "messages", "response_text", "choices",
    "tool_calls", "tool_calls_count", "finish_reason", "response_id", "prompt_tokens",
    "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens", "usage_estimated",
    "status", "upstream_status", "outcome", "error_type", "error_message", "ttfb_ms", "ttft_ms",
    "duration_ms", "bytes_in", "bytes_out", "chunk_count", "chunks_missing", "gap_max_ms",
    "gap_p50_ms", "gap_p99_ms", "sse_events", "sse_parse_errors", "done_marker",
)  # fmt: skip

_UPSTREAM_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "openai-request-id", "cf-ray")


def _ts(value: int | dt.datetime) -> dt.datetime:
    """Avro timestamp-micros decode to aware datetimes; plain micros are accepted too."""
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromtimestamp(value / 1_000_000, tz=dt.UTC)


def _pairs(headers: Sequence[dict[str, str]]) -> list[tuple[str, str]]:
    return [(h["name"], h["value"]) for h in headers]


# Raw columns whose value is not the event field of the same name: (field, conversion).
_DERIVED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "received_at": ("received_at_us", _ts),
    "completed_at": ("completed_at_us", _ts),
    "headers": ("headers", _pairs),
    "response_headers": ("response_headers", _pairs),
}


def raw_columns(
    columns: Sequence[str],
    events: Sequence[dict[str, Any]],
    partitions: Sequence[int],
    offsets: Sequence[int],
) -> list[list[Any]]:
    """The rows of one raw table, column by column (``columns`` is one of the *_COLUMNS above).

    Column-oriented because that is what the Native format sends: building one list per column
    costs a third of building a tuple per row that clickhouse-connect then pivots again.
    """
    out: list[list[Any]] = []
    for name in columns:
        if name == "kafka_partition":
            out.append(list(partitions))
        elif name == "kafka_offset":
            out.append(list(offsets))
        elif name in _DERIVED:
            source, convert = _DERIVED[name]
            out.append([convert(e[source]) for e in events])
        else:
            out.append([e[name] for e in events])
    return out


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _ms(ns: int | None) -> float | None:
    return None if ns is None else ns / 1_000_000


def exchange_row(
    request: dict[str, Any] | None, chunks: Sequence[ChunkIn], completed: dict[str, Any]
) -> tuple[Any, ...]:
    """One row describing the whole exchange. ``request`` may be missing if its event was lost."""
    req = request or {}
    dialect = req.get("dialect", "openai")
    endpoint = req.get("endpoint", "")
    body: bytes = req.get("body", b"")
    parsed = parse_request(body, dialect=dialect)
    answer: Assembled = assemble(
        chunks, endpoint=endpoint, dialect=dialect, stream=bool(req.get("stream"))
    )
    usage = answer.usage
    estimated = usage.prompt_tokens is None and usage.completion_tokens is None
    if estimated:
        guess = estimate_usage(
            body, [c.data for c in chunks], endpoint=endpoint, dialect=dialect,
            stream=bool(req.get("stream")),
        )  # fmt: skip
        usage.prompt_tokens, usage.completion_tokens = guess.prompt_tokens, guess.completion_tokens
        usage.total_tokens = guess.total_tokens
    offsets = [c.offset_ns for c in chunks]
    gaps = sorted((b - a) / 1_000_000 for a, b in itertools.pairwise(offsets))
    response_headers = {h["name"]: h["value"] for h in completed["response_headers"]}
    upstream_request_id = next(
        (response_headers[h] for h in _UPSTREAM_REQUEST_ID_HEADERS if h in response_headers), ""
    )
    outcome, error_type, error_message = final_outcome(
        completed["outcome"], completed["error_type"], completed["error_message"], answer
    )
    expected = completed["chunk_count"]
    received_at = req.get("received_at_us") or _ts(completed["completed_at_us"]) - dt.timedelta(
        microseconds=completed["duration_ns"] // 1000
    )
    return (
        completed["request_id"],
        _ts(received_at),
        _ts(completed["completed_at_us"]),
        req.get("method", ""),
        req.get("path", ""),
        endpoint,
        dialect,
        req.get("provider", ""),
        req.get("upstream_url", ""),
        req.get("model_requested") or "",
        req.get("model_sent") or "",
        answer.model or "",
        bool(req.get("stream")),
        req.get("peer_ip", ""),
        req.get("forwarded_for") or "",
        req.get("client_ip", ""),
        req.get("user_agent") or "",
        req.get("client_key_fingerprint") or "",
        {h["name"]: h["value"] for h in req.get("headers", [])},
        response_headers,
        upstream_request_id,
        body,
        req.get("body_size", 0),
        req.get("body_truncated", False),
        parsed.json_valid,
        parsed.utf8_valid,
        orjson.dumps(parsed.params, default=str).decode(),
        parsed.temperature,
        parsed.top_p,
        parsed.max_tokens if parsed.max_tokens is None or parsed.max_tokens >= 0 else None,
        parsed.n if parsed.n is None or 0 <= parsed.n < 65536 else None,
        parsed.response_format or "",
        min(parsed.tools_count, 65535),
        parsed.tools_json,
        parsed.system_prompt,
        parsed.messages,
        answer.text,
        answer.choices,
        orjson.dumps(answer.tool_calls, default=str).decode() if answer.tool_calls else "",
        len(answer.tool_calls),
        answer.finish_reason or "",
        answer.response_id or "",
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
        estimated,
        completed["status"],
        completed["upstream_status"],
        outcome,
        error_type,
        error_message,
        _ms(completed["ttfb_ns"]),
        _ms(answer.first_token_offset_ns),
        completed["duration_ns"] / 1_000_000,
        completed["bytes_in"],
        completed["bytes_out"],
        expected,
        max(0, expected - len(chunks)),
        gaps[-1] if gaps else 0.0,
        _quantile(gaps, 0.5),
        _quantile(gaps, 0.99),
        answer.sse_events,
        answer.parse_errors,
        answer.done_marker,
    )
