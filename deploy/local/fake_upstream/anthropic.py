"""Anthropic's endpoints: Messages (its SSE event types, tool use) and count_tokens."""

from __future__ import annotations

from aiohttp import web

from deploy.local.fake_upstream.wire import (
    Json,
    content_text,
    echo_text,
    first_tool,
    json_response,
    last_user_text,
    maybe_fail,
    next_id,
    provider_request_id,
    read_object,
    split_pieces,
    sse,
    stream_events,
    tool_arguments,
)

# --- Anthropic: Messages ------------------------------------------------------------------------


def _anthropic_guard(request: web.Request) -> web.Response | None:
    if "anthropic-version" not in request.headers:
        return json_response(
            {"type": "error", "error": {"type": "invalid_request_error",
                                        "message": "anthropic-version: header is required"}},
            provider_request_id("anthropic"), 400,
        )  # fmt: skip
    return None


async def messages(request: web.Request) -> web.StreamResponse:
    failed = _anthropic_guard(request) or await maybe_fail(request, "anthropic")
    if failed is not None:
        return failed
    body = await read_object(request, "anthropic")
    if isinstance(body, web.Response):
        return body
    user_text = last_user_text(body)
    pieces = split_pieces(request, echo_text(user_text))
    tool = first_tool(body)
    message_id = next_id("msg")
    input_tokens = len(user_text.split())
    stop_reason = "tool_use" if tool else "end_turn"

    def message(content: list[Json], output_tokens: int, stop: str | None) -> Json:
        return {"id": message_id, "type": "message", "role": "assistant", "content": content,
                "model": body.get("model", "claude-fake"), "stop_reason": stop,
                "stop_sequence": None, "usage": {"input_tokens": input_tokens,
                                                 "output_tokens": output_tokens}}  # fmt: skip

    if not body.get("stream"):
        block: Json = {"type": "text", "text": "".join(pieces)}
        if tool is not None:
            block = {
                "type": "tool_use",
                "id": "toolu_0",
                "name": tool,
                "input": {"text": user_text},
            }
        return json_response(
            message([block], len(pieces), stop_reason), provider_request_id("anthropic")
        )
    events: list[tuple[str, Json]] = [
        ("message_start", {"message": message([], 1, None)}),
    ]
    if tool is not None:
        events.append(("content_block_start", {"index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_0", "name": tool, "input": {}}}))  # fmt: skip
        events.extend(
            ("content_block_delta",
             {"index": 0, "delta": {"type": "input_json_delta", "partial_json": part}})
            for part in tool_arguments(user_text)
        )  # fmt: skip
    else:
        events.append(
            ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        )
        events.extend(
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
            for piece in pieces
        )
    events.insert(2, ("ping", {}))  # real streams ping after the first block start
    events += [
        ("content_block_stop", {"index": 0}),
        ("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None},
                           "usage": {"output_tokens": len(pieces)}}),
        ("message_stop", {}),
    ]  # fmt: skip
    frames = [sse({"type": kind, **doc}, kind) for kind, doc in events]
    error = sse(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"
    )
    return await stream_events(request, "anthropic", frames, error, opening=3)


async def count_tokens(request: web.Request) -> web.StreamResponse:
    failed = _anthropic_guard(request) or await maybe_fail(request, "anthropic")
    if failed is not None:
        return failed
    body = await read_object(request, "anthropic")
    if isinstance(body, web.Response):
        return body
    words = sum(len(content_text(m.get("content")).split()) for m in body.get("messages") or [])
    return json_response({"input_tokens": words}, provider_request_id("anthropic"))
