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
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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

_USAGE_COUNTS = (
    "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens",
)  # fmt: skip
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


@dataclass(slots=True)
class BuiltBatch:
    """The records of a batch of leaves as Arrow columns, and what the later steps need of each.

    ``columns`` holds every ``SCHEMA`` field but the three decided later (``conversation_hash``,
    ``split``, ``language``); the lists are per record, in the batch's order.
    """

    columns: dict[str, pa.Array]
    texts: list[list[str]]
    first_user: list[str]
    scrubbed: list[Counter[str]]


class _KeyedIds:
    """``HMAC-SHA256(key, value)``, 16 bytes in hex, for many values: the keyed state is computed
    once and copied per value."""

    def __init__(self, key: bytes) -> None:
        self._start = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, value: str) -> str:
        mac = self._start.copy()
        mac.update(value.encode())
        return mac.hexdigest()[:32]


_UNITS_US = {"day": 86_400_000_000, "hour": 3_600_000_000, "second": 1_000_000, "microsecond": 1}


def build_batch(
    batch: pa.RecordBatch,
    *,
    profile: Profile,
    record_key: bytes,
    ip_key: bytes,
) -> BuiltBatch:
    """The dataset records of a batch of leaf exchanges (rows of ``selection.leaves_sql``).

    Columns the records copy (models, parameters, usage, timestamps) stay Arrow arrays; only the
    conversation itself (request JSON → messages, scrubbing, timing) is built row by row.
    """
    rows = batch.num_rows
    column = batch.column
    request_ids: list[str] = column("request_id").to_pylist()
    roles: list[str] = []
    contents: list[str] = []
    names: list[str | None] = []
    call_ids: list[str | None] = []
    calls: list[list[dict[str, Any]]] = []
    images: list[list[str]] = []
    offsets = [0]
    texts: list[list[str]] = []
    first_user: list[str] = []
    user_turns: list[int] = []
    scrubbed: list[Counter[str]] = []
    timings: list[list[dict[str, Any]]] = []
    for body, dialect, answer, answer_calls, earlier, stream, ttft, chunks in zip(
        column("request_body").to_pylist(),
        column("dialect").to_pylist(),
        column("response_text").to_pylist(),
        column("tool_calls").to_pylist(),
        column("turn_timing").to_pylist(),
        column("stream").to_pylist(),
        column("ttft_ms").to_pylist(),
        column("chunk_offsets_ms").to_pylist(),
        strict=True,
    ):
        messages = messages_of(
            body,
            dialect=dialect,
            answer=answer,
            answer_tool_calls=answer_calls,
            keep_images=profile.keep_images,
        )
        if profile.scrub:
            scrubber = Scrubber()
            for message in messages:
                _scrub_message(scrubber, message)
            scrubbed.append(scrubber.counts)
        else:
            scrubbed.append(Counter())
        users = 0
        first = None
        for m in messages:
            roles.append(m.role)
            contents.append(m.content)
            names.append(m.name)
            call_ids.append(m.tool_call_id)
            calls.append(m.tool_calls)
            images.append(m.images)
            if m.role == "user":
                users += 1
                if first is None:
                    first = m.content
        offsets.append(len(roles))
        texts.append(contents[offsets[-2] :])
        first_user.append(first or "")
        user_turns.append(users)
        timings.append(_turn_timing(earlier, stream, ttft, chunks, messages))
    message_fields = [
        pa.array(roles, pa.string()),
        pa.array(contents, pa.string()),
        pa.array(names, pa.string()),
        pa.array(call_ids, pa.string()),
        pa.array(calls, MESSAGE.field("tool_calls").type),
        pa.array(images, MESSAGE.field("images").type),
    ]
    messages_column = pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.StructArray.from_arrays(message_fields, fields=list(MESSAGE)),
    )
    unit = _UNITS_US[profile.precision]
    micros = column("received_at").cast(pa.int64()).to_numpy()
    timestamps = pa.array((micros // unit) * unit, pa.int64()).cast(SCHEMA.field("timestamp").type)
    responded = column("model_responded")
    usage = pa.StructArray.from_arrays(
        [
            *(column(f).cast(pa.int64()) for f in _USAGE_COUNTS),
            column("usage_estimated").cast(pa.bool_()),
        ],
        fields=list(USAGE),
    )
    client = profile.client_fields
    nothing = pa.nulls(rows, pa.string())
    if client != "none":
        ip_id = _KeyedIds(ip_key)
        families: dict[str, str] = {}
        hashed_ip = pa.array([ip_id(ip) for ip in column("client_ip").to_pylist()], pa.string())
        family = pa.array(
            [
                families.get(ua) or families.setdefault(ua, user_agent_family(ua))
                for ua in column("user_agent").to_pylist()
            ],
            pa.string(),
        )
    else:
        hashed_ip = family = nothing
    record_id = _KeyedIds(record_key)
    columns = {
        "conversation_id": pa.array([record_id(r) for r in request_ids], pa.string()),
        "timestamp": timestamps,
        "model_requested": column("model_requested"),
        "model": pc.if_else(pc.not_equal(responded, ""), responded, column("model_requested")),
        "provider": column("provider"),
        "endpoint": column("endpoint"),
        "turn": pa.array(user_turns, pa.int32()),
        "messages": messages_column,
        "temperature": column("temperature").cast(pa.float64()),
        "top_p": column("top_p").cast(pa.float64()),
        "max_tokens": column("max_tokens").cast(pa.int64()),
        "finish_reason": column("finish_reason"),
        "usage": usage,
        "turn_timing": pa.array(timings, SCHEMA.field("turn_timing").type),
        "hashed_ip": hashed_ip,
        "user_agent_family": family,
        "client_ip": column("client_ip") if client == "raw" else nothing,
        "user_agent": column("user_agent") if client == "raw" else nothing,
        "request_id": column("request_id") if client == "raw" else nothing,
    }
    return BuiltBatch(columns, texts, first_user, scrubbed)


def _scrub_message(scrubber: Scrubber, message: Message) -> None:
    message.content = scrubber.scrub(message.content)
    if message.name:
        message.name = scrubber.scrub(message.name)
    for call in message.tool_calls:
        call["function"]["arguments"] = scrubber.scrub(call["function"]["arguments"])
    # Image URLs can carry tokens and data URLs can carry anything: a scrubbed image is dropped.
    message.images = [scrubber.scrub(url) for url in message.images if not url.startswith("data:")]


def _turn_timing(
    earlier: list[Any] | None,
    stream: bool,
    ttft_ms: float | None,
    chunk_offsets_ms: list[float] | None,
    messages: list[Message],
) -> list[dict[str, Any]]:
    """Timing of each assistant turn: earlier turns from their own (folded) exchanges."""
    out: list[dict[str, Any]] = []
    # Ordered by position in the conversation; numbered by answer (1 = the first answer).
    for entry in earlier or []:
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
        streamed = bool(stream)
        out.append(
            {
                "turn": len(out) + 1,
                "captured": True,
                "streamed": streamed,
                "ttft_ms": ttft_ms,
                "chunk_offsets_ms": list(chunk_offsets_ms or []) if streamed else None,
            }
        )
    return out
