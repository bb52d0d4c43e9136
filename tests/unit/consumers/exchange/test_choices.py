"""One rule for ``choices`` in every mode: one text per choice the response carried, '' for a
choice without text (a tool call), [] when it carried none."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from consumers.exchange.assemble import ChunkIn, assemble


def sse(*docs: tuple[str | None, dict[str, Any]]) -> list[ChunkIn]:
    return [
        ChunkIn(i + 1, (i + 1) * 1000,
                (f"event: {name}\n".encode() if name else b"") + b"data: " + orjson.dumps(doc)
                + b"\n\n")
        for i, (name, doc) in enumerate(docs)
    ] + [ChunkIn(len(docs) + 1, 99_000, b"data: [DONE]\n\n")]  # fmt: skip


CALL = {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{}"}}

OPENAI_BODY = {"id": "c", "model": "m", "choices": [{
    "index": 0, "finish_reason": "tool_calls",
    "message": {"role": "assistant", "content": None, "tool_calls": [CALL]}}]}  # fmt: skip
OPENAI_STREAM = [
    (None, {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}),
    (None, {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **CALL}]}}]}),
    (None, {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
]  # fmt: skip
ANTHROPIC_BODY = {
    "id": "msg", "type": "message", "model": "claude", "stop_reason": "tool_use",
    "content": [{"type": "tool_use", "id": "tu", "name": "get", "input": {}}]}  # fmt: skip
ANTHROPIC_STREAM = [
    ("message_start", {"type": "message_start", "message": {"id": "msg", "content": []}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "tool_use", "id": "tu", "name": "get"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
    ("message_stop", {"type": "message_stop"}),
]  # fmt: skip
FUNCTION_CALL = {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{}"}
RESPONSES_BODY = {"id": "resp", "model": "m", "status": "completed", "output": [FUNCTION_CALL]}
RESPONSES_STREAM = [
    ("response.created", {"type": "response.created", "response": {"id": "resp", "output": []}}),
    ("response.completed", {"type": "response.completed", "response": RESPONSES_BODY}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("endpoint", "dialect", "whole", "streamed"),
    [
        ("/v1/chat/completions", "openai", OPENAI_BODY, OPENAI_STREAM),
        ("/v1/messages", "anthropic", ANTHROPIC_BODY, ANTHROPIC_STREAM),
        ("/v1/responses", "openai", RESPONSES_BODY, RESPONSES_STREAM),
    ],
    ids=["chat", "messages", "responses"],
)
def test_a_tool_call_without_text_is_one_empty_choice_in_both_modes(
    endpoint: str, dialect: str, whole: dict[str, Any], streamed: list[Any]
) -> None:
    once = assemble([ChunkIn(1, 1000, orjson.dumps(whole))], endpoint=endpoint, dialect=dialect,
                    stream=False)  # fmt: skip
    stream = assemble(sse(*streamed), endpoint=endpoint, dialect=dialect, stream=True)
    assert once.choices == stream.choices == [""]
    assert once.text == stream.text == ""
    assert len(once.tool_calls) == len(stream.tool_calls) == 1


def test_n_streamed_choices_keep_their_places_when_one_has_no_text() -> None:
    out = assemble(sse(
        (None, {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **CALL}]}}]}),
        (None, {"choices": [{"index": 1, "delta": {"content": "b"}}]}),
    ), endpoint="/v1/chat/completions", dialect="openai", stream=True)  # fmt: skip
    assert out.choices == ["", "b"]


def test_a_stream_cut_before_any_choice_has_none() -> None:
    out = assemble(sse((None, {"id": "c", "choices": [], "usage": {"prompt_tokens": 1}})),
                   endpoint="/v1/chat/completions", dialect="openai", stream=True)  # fmt: skip
    assert out.choices == []
