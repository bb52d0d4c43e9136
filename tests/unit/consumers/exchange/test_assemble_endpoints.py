"""Assembly of the answers of the endpoints beyond chat: embeddings, count_tokens, completions."""

from __future__ import annotations

import orjson

from consumers.exchange.assemble import ChunkIn, assemble


def one(doc: object) -> list[ChunkIn]:
    return [ChunkIn(1, 1000, orjson.dumps(doc))]


def test_embeddings_usage_without_text() -> None:
    out = assemble(
        one({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": "AAAA"}],
             "model": "text-embedding-3-small", "usage": {"prompt_tokens": 7, "total_tokens": 7}}),
        endpoint="/v1/embeddings", dialect="openai", stream=False,
    )  # fmt: skip
    assert out.usage.prompt_tokens == 7
    assert out.usage.total_tokens == 7
    assert out.usage.completion_tokens is None
    assert out.text == ""
    assert out.model == "text-embedding-3-small"
    assert out.parse_errors == 0


def test_anthropic_count_tokens_is_prompt_usage() -> None:
    out = assemble(
        one({"input_tokens": 12}),
        endpoint="/v1/messages/count_tokens", dialect="anthropic", stream=False,
    )  # fmt: skip
    assert out.usage.prompt_tokens == 12
    assert out.usage.completion_tokens is None


def test_legacy_completions_with_n_choices() -> None:
    out = assemble(
        one({"id": "cmpl-1", "model": "m", "choices": [
            {"index": 0, "text": "a", "finish_reason": "stop"},
            {"index": 1, "text": "b", "finish_reason": "length"}]}),
        endpoint="/v1/completions", dialect="openai", stream=False,
    )  # fmt: skip
    assert out.choices == ["a", "b"]
    assert out.finish_reason == "stop"


def test_anthropic_stream_cut_before_message_delta_has_no_output_count() -> None:
    events = [
        ("message_start", {"message": {"id": "msg_1", "model": "claude", "content": [],
                                       "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
    ]  # fmt: skip
    data = b"".join(
        f"event: {kind}\n".encode() + b"data: " + orjson.dumps({"type": kind, **doc}) + b"\n\n"
        for kind, doc in events
    )
    out = assemble(
        [ChunkIn(1, 1000, data)], endpoint="/v1/messages", dialect="anthropic", stream=True
    )
    assert out.text == "Hi"
    assert out.usage.prompt_tokens == 9
    assert out.usage.completion_tokens is None
