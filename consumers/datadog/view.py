"""What ops see of one finished exchange, built from its events (pure, no I/O).

The request and chunk events may be missing (lost before capture, or evicted from memory): the
view then carries what the completed event alone tells, and the LLM span has no content.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consumers.exchange.assemble import ChunkIn, assemble, final_outcome
from consumers.exchange.request import parse_request


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeView:
    request_id: str
    started_at_ns: int  # wall clock, nanoseconds since the epoch
    duration_ns: int
    endpoint: str
    provider: str
    model: str  # what the upstream says it ran, else what was sent, else what was asked for
    stream: bool
    status: int
    outcome: str
    error_type: str
    error_message: str
    bytes_in: int
    bytes_out: int
    ttfb_ns: int | None
    ttft_ns: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    input_messages: tuple[tuple[str, str], ...]
    output_text: str
    tool_calls: int
    finish_reason: str
    parameters: dict[str, Any]
    complete: bool  # request and every chunk were available


def _micros(value: int | dt.datetime) -> int:
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1_000_000)
    return value


def exchange_view(
    request: dict[str, Any] | None, chunks: Sequence[ChunkIn], completed: dict[str, Any]
) -> ExchangeView:
    req = request or {}
    dialect = req.get("dialect", "openai")
    endpoint = req.get("endpoint", "")
    stream = bool(req.get("stream"))
    parsed = parse_request(req.get("body", b""), dialect=dialect)
    answer = assemble(chunks, endpoint=endpoint, dialect=dialect, stream=stream)
    outcome, error_type, error_message = final_outcome(
        completed["outcome"], completed["error_type"], completed["error_message"], answer
    )
    completed_us = _micros(completed["completed_at_us"])
    if "received_at_us" in req:
        started_ns = _micros(req["received_at_us"]) * 1000
    else:
        started_ns = completed_us * 1000 - completed["duration_ns"]
    messages = list(parsed.messages)
    if parsed.system_prompt and not any(role in {"system", "developer"} for role, _ in messages):
        messages.insert(0, ("system", parsed.system_prompt))  # Anthropic's top-level system
    usage = answer.usage
    return ExchangeView(
        request_id=completed["request_id"],
        started_at_ns=started_ns,
        duration_ns=completed["duration_ns"],
        endpoint=endpoint,
        provider=req.get("provider", ""),
        model=answer.model or req.get("model_sent") or req.get("model_requested") or "",
        stream=stream,
        status=completed["status"],
        outcome=outcome,
        error_type=error_type,
        error_message=error_message,
        bytes_in=completed["bytes_in"],
        bytes_out=completed["bytes_out"],
        ttfb_ns=completed["ttfb_ns"],
        ttft_ns=answer.first_token_offset_ns,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        input_messages=tuple(messages),
        output_text=answer.text,
        tool_calls=len(answer.tool_calls),
        finish_reason=answer.finish_reason or "",
        parameters={
            k: v
            for k, v in {
                "temperature": parsed.temperature,
                "top_p": parsed.top_p,
                "max_tokens": parsed.max_tokens,
                "n": parsed.n,
            }.items()
            if v is not None
        },
        complete=request is not None and len(chunks) >= completed["chunk_count"],
    )
