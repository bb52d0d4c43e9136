"""Pure construction of the exchange events: request ids, the request, chunk and completed events.

Nothing here does I/O, so the hot path's per-event cost can be measured and unit-tested alone.
Credentials are fingerprinted by proxy/redaction.py before they reach an event.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.redaction import Fingerprinter, Redactor

MAX_FORWARDED_FOR_CHARS = 1024


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version, 74 random bits. Sorts by time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    hex_ = f"{value:032x}"
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


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


@dataclass(frozen=True, slots=True, kw_only=True)
class CapturedRequest:
    """What the proxy knows of one request when it has read the body: the request event's fields.

    Built once per exchange; the event is made from it (``request_event``) once the body's
    credentials are fingerprinted, which may happen later, while the upstream works.
    ``body`` is as the client sent it; ``max_body_in_event`` caps the stored copy.
    ``refused_size`` set: the body was refused unread (over the limit), and is recorded as
    truncated to nothing, with the size the client declared (0 when chunked).
    """

    request_id: str
    received_at_us: int
    method: str
    path: str
    query: str
    headers: list[dict[str, str]]
    peer_ip: str
    forwarded_for: str | None
    client_ip: str
    client_key_fingerprint: str | None
    body: bytes
    max_body_in_event: int
    model_requested: str | None
    stream: bool
    endpoint: str
    dialect: str
    provider: str
    upstream_url: str
    model_sent: str | None
    proxy_instance: str
    refused_size: int | None = None


def request_event(
    request: CapturedRequest,
    *,
    redactor: Redactor | None = None,
    redacted_body: bytes | None = None,
    body_sha256: str | None = None,
) -> dict[str, Any]:
    """The request event.

    ``body_size`` is what the client sent; ``body`` and ``body_sha256`` are of the stored bytes,
    after credentials were fingerprinted (a hash of the original would let anyone holding the row
    confirm a guessed password offline). ``redacted_body`` and ``body_sha256``, when given, are
    those two already computed by the caller (the exchange hashes large bodies in a worker
    thread).
    """
    body = request.body
    if redacted_body is not None:
        redacted = redacted_body
    else:
        redacted = redactor.body(body) if redactor is not None else body
    stored_body, truncated = capped(redacted, request.max_body_in_event)
    refused_size = request.refused_size
    truncated = truncated or refused_size is not None
    forwarded_for = request.forwarded_for
    if forwarded_for is not None:
        forwarded_for = forwarded_for[:MAX_FORWARDED_FOR_CHARS]
    headers = request.headers
    user_agent = next((h["value"] for h in headers if h["name"] == "user-agent"), None)
    return {
        "request_id": request.request_id,
        "received_at_us": request.received_at_us,
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": headers,
        "peer_ip": request.peer_ip,
        "forwarded_for": forwarded_for,
        "client_ip": request.client_ip,
        "user_agent": user_agent,
        "client_key_fingerprint": request.client_key_fingerprint,
        "body": stored_body,
        "body_size": len(body) if refused_size is None else refused_size,
        "body_truncated": truncated,
        "body_sha256": body_sha256 or hashlib.sha256(redacted).hexdigest(),
        "model_requested": request.model_requested,
        "stream": request.stream,
        "endpoint": request.endpoint,
        "dialect": request.dialect,
        "provider": request.provider,
        "upstream_url": request.upstream_url,
        "model_sent": request.model_sent,
        "proxy_instance": request.proxy_instance,
    }


def chunk_event(
    *,
    request_id: str,
    seq: int,
    offset_ns: int,
    data: bytes,
    max_bytes: int,
    delivered: bool,
    redactor: Redactor | None = None,
) -> dict[str, Any]:
    """One read from the upstream. An upstream error that echoes a key (``Incorrect API key
    provided: sk-…``) is stored with the key fingerprinted."""
    stored, truncated = capped(redactor.known(data) if redactor is not None else data, max_bytes)
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
    fingerprinter: Fingerprinter | None = None,
) -> dict[str, Any]:
    items = response_headers.items() if isinstance(response_headers, Mapping) else response_headers
    stored_headers = (
        fingerprinter.headers(items)[0]  # an upstream Set-Cookie is a credential too
        if fingerprinter is not None
        else [{"name": k.lower(), "value": v} for k, v in items]
    )
    return {
        "request_id": request_id,
        "completed_at_us": time.time_ns() // 1000,
        "status": status,
        "outcome": outcome,
        "error_type": error_type,
        "error_message": error_message,
        "upstream_status": upstream_status,
        "response_headers": stored_headers,
        "ttfb_ns": ttfb_ns,
        "duration_ns": duration_ns,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "chunk_count": chunk_count,
    }
