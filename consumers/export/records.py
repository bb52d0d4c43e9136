"""One dataset record per conversation, as each profile allows: the schema and the rules.

Pure and I/O-free. A profile decides what leaves the building:

- ``open``: scrubbed text (``scrub.py``), images replaced by ``<image>``, no client fields,
  timestamps to the day.
- ``licensed``: scrubbed text, images kept, a keyed hash of the client IP (the key is the
  dataset's own, so the hash links a client's conversations within this dataset and nowhere
  else), the user-agent family without versions, timestamps to the second.
- ``legal``: everything as captured: no scrubbing, the client IP and user agent, the request id,
  timestamps to the microsecond. Only with an explicit flag (``--raw``).

Every record carries a ``conversation_id`` keyed for its recipient: ``HMAC(record_key,
request_id)``, so two recipients of the same conversation hold different ids and a leaked copy
names the export it came from (``docs/DATASETS.md``, "Tracing a leaked copy").
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from consumers.export.conversations import Message, messages_of
from consumers.export.scrub import Scrubber

PROFILES = ("open", "licensed", "legal")
PRECISIONS = ("day", "hour", "second", "microsecond")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    scrub: bool
    keep_images: bool
    client_fields: str  # "none", "hashed", "raw"
    precision: str

    @classmethod
    def named(cls, name: str, *, precision: str | None = None) -> Profile:
        rules = {
            "open": cls("open", True, False, "none", "day"),
            "licensed": cls("licensed", True, True, "hashed", "second"),
            "legal": cls("legal", False, True, "raw", "microsecond"),
        }
        if name not in rules:
            raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
        profile = rules[name]
        if precision is not None:
            if precision not in PRECISIONS:
                raise ValueError(f"unknown precision {precision!r}: one of {', '.join(PRECISIONS)}")
            profile = cls(
                name, profile.scrub, profile.keep_images, profile.client_fields, precision
            )
        return profile


_CALL = pa.struct(
    [
        ("id", pa.string()),
        ("type", pa.string()),
        ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())])),
    ]
)
MESSAGE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("name", pa.string()),
        ("tool_call_id", pa.string()),
        ("tool_calls", pa.list_(_CALL)),
        ("images", pa.list_(pa.string())),
    ]
)
TURN_TIMING = pa.struct(
    [
        ("turn", pa.int32()),
        ("captured", pa.bool_()),
        ("streamed", pa.bool_()),
        ("ttft_ms", pa.float64()),
        ("chunk_offsets_ms", pa.list_(pa.float64())),
    ]
)
USAGE = pa.struct(
    [
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("reasoning_tokens", pa.int64()),
        ("estimated", pa.bool_()),
    ]
)
SCHEMA = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("conversation_hash", pa.string()),
        ("split", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("model_requested", pa.string()),
        ("model", pa.string()),
        ("provider", pa.string()),
        ("endpoint", pa.string()),
        ("turn", pa.int32()),
        ("language", pa.string()),
        ("messages", pa.list_(MESSAGE)),
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("max_tokens", pa.int64()),
        ("finish_reason", pa.string()),
        ("usage", USAGE),
        ("turn_timing", pa.list_(TURN_TIMING)),
        ("hashed_ip", pa.string()),
        ("user_agent_family", pa.string()),
        ("client_ip", pa.string()),
        ("user_agent", pa.string()),
        ("request_id", pa.string()),
    ]
)

_UA_PRODUCT = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*(?:/[A-Za-z][A-Za-z0-9_.-]*)?)")
_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"))  # fmt: skip


def user_agent_family(user_agent: str) -> str:
    """The client without its version: ``OpenAI/Python``, ``curl``, ``Chrome``, ``other``."""
    if not user_agent:
        return ""
    if user_agent.startswith("Mozilla/"):
        return next((name for token, name in _BROWSERS if token in user_agent), "browser")
    match = _UA_PRODUCT.match(user_agent)
    if not match:
        return "other"
    product = match.group(1)
    # "OpenAI/Python 1.50.0" → "OpenAI/Python"; "curl/8.5.0" → "curl".
    name, _, rest = product.partition("/")
    return product if rest and not rest[0].isdigit() else name


def truncate(moment: datetime, precision: str) -> datetime:
    if precision == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if precision == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if precision == "second":
        return moment.replace(microsecond=0)
    return moment


def keyed_id(key: bytes, value: str, *, size: int = 16) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[: size * 2]


@dataclass(slots=True)
class Built:
    """A record and what building it found: the scrubbed placeholders by kind."""

    record: dict[str, Any]
    texts: list[str]
    scrubbed: Counter[str]


def build_record(
    row: dict[str, Any],
    *,
    profile: Profile,
    record_key: bytes,
    ip_key: bytes,
) -> Built:
    """The dataset record of one leaf exchange (a row of ``selection.leaves_sql``)."""
    messages = messages_of(
        row["request_body"],
        dialect=row["dialect"],
        answer=row["response_text"],
        answer_tool_calls=row["tool_calls"],
        keep_images=profile.keep_images,
    )
    scrubbed: Counter[str] = Counter()
    if profile.scrub:
        scrubber = Scrubber()
        for message in messages:
            _scrub_message(scrubber, message)
        scrubbed = scrubber.counts
    texts = [m.content for m in messages]
    timing = _turn_timing(row, messages)
    client = profile.client_fields
    record = {
        "conversation_id": keyed_id(record_key, row["request_id"]),
        "timestamp": truncate(row["received_at"], profile.precision),
        "model_requested": row["model_requested"],
        "model": row["model_responded"] or row["model_requested"],
        "provider": row["provider"],
        "endpoint": row["endpoint"],
        "turn": sum(1 for m in messages if m.role == "user"),
        "messages": [_message_row(m) for m in messages],
        "temperature": row["temperature"],
        "top_p": row["top_p"],
        "max_tokens": row["max_tokens"],
        "finish_reason": row["finish_reason"],
        "usage": {
            "prompt_tokens": row["prompt_tokens"],
            "completion_tokens": row["completion_tokens"],
            "total_tokens": row["total_tokens"],
            "cached_tokens": row["cached_tokens"],
            "reasoning_tokens": row["reasoning_tokens"],
            "estimated": bool(row["usage_estimated"]),
        },
        "turn_timing": timing,
        "hashed_ip": keyed_id(ip_key, row["client_ip"]) if client != "none" else None,
        "user_agent_family": user_agent_family(row["user_agent"]) if client != "none" else None,
        "client_ip": row["client_ip"] if client == "raw" else None,
        "user_agent": row["user_agent"] if client == "raw" else None,
        "request_id": row["request_id"] if client == "raw" else None,
    }
    return Built(record, texts, scrubbed)


def _scrub_message(scrubber: Scrubber, message: Message) -> None:
    message.content = scrubber.scrub(message.content)
    if message.name:
        message.name = scrubber.scrub(message.name)
    for call in message.tool_calls:
        call["function"]["arguments"] = scrubber.scrub(call["function"]["arguments"])
    # Image URLs can carry tokens and data URLs can carry anything: a scrubbed image is dropped.
    message.images = [scrubber.scrub(url) for url in message.images if not url.startswith("data:")]


def _message_row(message: Message) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "name": message.name,
        "tool_call_id": message.tool_call_id,
        "tool_calls": message.tool_calls,
        "images": message.images,
    }


def _turn_timing(row: dict[str, Any], messages: list[Message]) -> list[dict[str, Any]]:
    """Timing of each assistant turn: earlier turns from their own (folded) exchanges."""
    out: list[dict[str, Any]] = []
    # Ordered by position in the conversation; numbered by answer (1 = the first answer).
    for entry in row["turn_timing"] or []:
        # A ClickHouse tuple arrives from Arrow as a struct: {"1": pos, "2": captured, ...}.
        _position, captured, streamed, ttft, chunks = (
            entry.values() if isinstance(entry, dict) else entry
        )
        out.append(
            {
                "turn": len(out) + 1,
                "captured": bool(captured),
                "streamed": bool(streamed) if captured else None,
                "ttft_ms": ttft if captured else None,
                "chunk_offsets_ms": list(chunks) if captured and streamed else None,
            }
        )
    if messages and messages[-1].role == "assistant":
        streamed = bool(row["stream"])
        out.append(
            {
                "turn": len(out) + 1,
                "captured": True,
                "streamed": streamed,
                "ttft_ms": row["ttft_ms"],
                "chunk_offsets_ms": list(row["chunk_offsets_ms"] or []) if streamed else None,
            }
        )
    return out
