"""Pure construction of the exchange events, and the fingerprinting of every credential in them.

Nothing here does I/O, so the hot path's per-event cost can be measured and unit-tested alone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson

# Headers whose whole value is a credential. Authorization keeps its scheme word so analysts can
# still tell Bearer from Basic.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "set-cookie",
        "openai-organization",
        "openai-project",
    }
)
CREDENTIAL_QUERY_PARAMS = frozenset(
    {"key", "api_key", "apikey", "api-key", "token", "access_token", "auth", "password", "secret"}
)
FINGERPRINT_PREFIX = "fp:"
MAX_FORWARDED_FOR_CHARS = 1024


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version, 74 random bits. Sorts by time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    hex_ = f"{value:032x}"
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


class Fingerprinter:
    """Replaces credentials by an HMAC-SHA256 prefix under a key only the service holds."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def fingerprint(self, secret: str) -> str:
        digest = hmac.new(self._key, secret.encode("utf-8", "surrogateescape"), hashlib.sha256)
        return FINGERPRINT_PREFIX + digest.hexdigest()[:24]

    def header_value(self, name: str, value: str) -> tuple[str, str | None]:
        """The value to store for a header, and the credential's fingerprint if it held one."""
        if name not in CREDENTIAL_HEADERS:
            return value, None
        scheme, sep, token = value.partition(" ")
        if name in {"authorization", "proxy-authorization"} and sep and token:
            fp = self.fingerprint(token.strip())
            return f"{scheme} {fp}", fp
        fp = self.fingerprint(value.strip())
        return fp, fp

    def headers(self, raw: Iterable[tuple[str, str]]) -> tuple[list[dict[str, str]], str | None]:
        """All headers in order, credentials fingerprinted; also the client key's fingerprint."""
        stored: list[dict[str, str]] = []
        client_key: str | None = None
        for name, value in raw:
            lname = name.lower()
            safe, fp = self.header_value(lname, value)
            if fp is not None and lname in {"authorization", "x-api-key", "api-key"}:
                client_key = client_key or fp
            stored.append({"name": lname, "value": safe})
        return stored, client_key

    def query(self, query_string: str) -> str:
        if not query_string:
            return ""
        pairs = parse_qsl(query_string, keep_blank_values=True)
        if not any(k.lower() in CREDENTIAL_QUERY_PARAMS for k, _ in pairs):
            return query_string
        return urlencode(
            [
                (k, self.fingerprint(v) if k.lower() in CREDENTIAL_QUERY_PARAMS else v)
                for k, v in pairs
            ],
            quote_via=quote,
        )


def peek_json(body: bytes) -> tuple[str | None, bool]:
    """The model name and stream flag of a JSON request body; (None, False) if it isn't JSON."""
    if not body:
        return None, False
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, False
    if not isinstance(parsed, dict):
        return None, False
    model = parsed.get("model")
    return (model if isinstance(model, str) else None), parsed.get("stream") is True


def capped(data: bytes, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of ``data`` and whether it was cut."""
    if len(data) <= limit:
        return data, False
    return data[:limit], True


def request_event(
    *,
    request_id: str,
    received_at_us: int,
    method: str,
    path: str,
    query: str,
    headers: list[dict[str, str]],
    peer_ip: str,
    forwarded_for: str | None,
    client_ip: str,
    client_key_fingerprint: str | None,
    body: bytes,
    max_body_in_event: int,
    model_requested: str | None,
    stream: bool,
    endpoint: str,
    dialect: str,
    provider: str,
    upstream_url: str,
    model_sent: str | None,
    proxy_instance: str,
) -> dict[str, Any]:
    stored_body, truncated = capped(body, max_body_in_event)
    if forwarded_for is not None:
        forwarded_for = forwarded_for[:MAX_FORWARDED_FOR_CHARS]
    user_agent = next((h["value"] for h in headers if h["name"] == "user-agent"), None)
    return {
        "request_id": request_id,
        "received_at_us": received_at_us,
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "peer_ip": peer_ip,
        "forwarded_for": forwarded_for,
        "client_ip": client_ip,
        "user_agent": user_agent,
        "client_key_fingerprint": client_key_fingerprint,
        "body": stored_body,
        "body_size": len(body),
        "body_truncated": truncated,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "model_requested": model_requested,
        "stream": stream,
        "endpoint": endpoint,
        "dialect": dialect,
        "provider": provider,
        "upstream_url": upstream_url,
        "model_sent": model_sent,
        "proxy_instance": proxy_instance,
    }


def chunk_event(
    *, request_id: str, seq: int, offset_ns: int, data: bytes, max_bytes: int, delivered: bool
) -> dict[str, Any]:
    stored, truncated = capped(data, max_bytes)
    return {
        "request_id": request_id,
        "seq": seq,
        "offset_ns": offset_ns,
        "data": stored,
        "size": len(data),
        "truncated": truncated,
        "delivered": delivered,
    }


def completed_event(
    *,
    request_id: str,
    status: int,
    outcome: str,
    error_type: str | None,
    error_message: str | None,
    upstream_status: int,
    response_headers: Mapping[str, str] | Iterable[tuple[str, str]],
    ttfb_ns: int | None,
    duration_ns: int,
    bytes_in: int,
    bytes_out: int,
    chunk_count: int,
) -> dict[str, Any]:
    items = response_headers.items() if isinstance(response_headers, Mapping) else response_headers
    return {
        "request_id": request_id,
        "completed_at_us": time.time_ns() // 1000,
        "status": status,
        "outcome": outcome,
        "error_type": error_type,
        "error_message": error_message,
        "upstream_status": upstream_status,
        "response_headers": [{"name": k.lower(), "value": v} for k, v in items],
        "ttfb_ns": ttfb_ns,
        "duration_ns": duration_ns,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "chunk_count": chunk_count,
    }
