from __future__ import annotations

import orjson

from consumers.exchange.assemble import ChunkIn, assemble


def sse(*docs: object, done: bool = True) -> bytes:
    out = b"".join(b"data: " + orjson.dumps(d) + b"\n\n" for d in docs)
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunks_of(data: bytes, size: int) -> list[ChunkIn]:
    return [
        ChunkIn(i + 1, (i + 1) * 1000, data[start : start + size])
        for i, start in enumerate(range(0, len(data), size))
    ]


def delta(
    content: str | None = None, *, index: int = 0, finish: str | None = None, **extra: object
) -> dict[str, object]:
    d: dict[str, object] = {} if content is None else {"content": content}
    d.update(extra)
    return {
        "id": "c1",
        "model": "m",
        "choices": [{"index": index, "delta": d, "finish_reason": finish}],
    }


def test_openai_chat_stream_text_usage_and_first_token() -> None:
    data = sse(
        delta("", role="assistant"),
        delta("Hel"),
        delta("lo"),
        delta(finish="stop"),
        {
            "id": "c1",
            "model": "m",
            "choices": [],
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 2,
                "total_tokens": 7,
                "prompt_tokens_details": {"cached_tokens": 1},
            },
        },
    )
    for size in (1, 7, len(data)):
        out = assemble(
            chunks_of(data, size), endpoint="/v1/chat/completions", dialect="openai", stream=True
        )
        assert out.text == "Hello"
        assert out.finish_reason == "stop"
        assert out.usage.prompt_tokens == 5
        assert out.usage.completion_tokens == 2
        assert out.usage.cached_tokens == 1
        assert out.done_marker
        assert out.model == "m"
        assert out.first_token_offset_ns is not None
    # With one chunk per event, the first token arrives in the second chunk.
    out = assemble(
        [
            ChunkIn(i + 1, (i + 1) * 1000, part + b"\n\n")
            for i, part in enumerate(data.split(b"\n\n")[:-1])
        ],
        endpoint="/v1/chat/completions",
        dialect="openai",
        stream=True,
    )
    assert out.first_token_offset_ns == 2000


def test_openai_tool_call_streamed_in_pieces() -> None:
    data = sse(
        delta(
            tool_calls=[
                {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": ""}}
            ]
        ),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city":'}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '"Paris"}'}}]),
        delta(finish="tool_calls"),
    )
    out = assemble(
        chunks_of(data, 13), endpoint="/v1/chat/completions", dialect="openai", stream=True
    )
    assert out.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert out.finish_reason == "tool_calls"


def test_n_greater_than_one_keeps_each_choice() -> None:
    data = sse(delta("a", index=0), delta("b", index=1), delta("c", index=0))
    out = assemble(
        chunks_of(data, 1000), endpoint="/v1/chat/completions", dialect="openai", stream=True
    )
    assert out.choices == ["ac", "b"]
    assert out.text == "ac"


def test_non_stream_body() -> None:
    body = orjson.dumps(
        {
            "id": "x",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    )
    out = assemble(
        chunks_of(body, 10), endpoint="/v1/chat/completions", dialect="openai", stream=False
    )
    assert out.text == "hi"
    assert out.usage.total_tokens == 4


def test_invalid_json_event_is_counted_and_the_rest_assembled() -> None:
    data = sse(delta("a")) + b"data: {not json\n\n" + sse(delta("b"))
    out = assemble(
        chunks_of(data, 5), endpoint="/v1/chat/completions", dialect="openai", stream=True
    )
    assert out.text == "ab"
    assert out.parse_errors == 1


def test_error_inside_stream_is_reported() -> None:
    data = sse(delta("a"), {"error": {"message": "overloaded", "type": "server_error"}}, done=False)
    out = assemble(
        chunks_of(data, 1000), endpoint="/v1/chat/completions", dialect="openai", stream=True
    )
    assert out.error_in_stream == "overloaded"
    assert not out.done_marker


def test_anthropic_stream() -> None:
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "model": "claude",
                    "usage": {"input_tokens": 9, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "tu_1", "name": "f", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"x":'},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "1}"},
            },
        ),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 12},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    data = b"".join(
        f"event: {name}\n".encode() + b"data: " + orjson.dumps(doc) + b"\n\n"
        for name, doc in events
    )
    out = assemble(chunks_of(data, 17), endpoint="/v1/messages", dialect="anthropic", stream=True)
    assert out.text == "Hi"
    assert out.tool_calls == [{"id": "tu_1", "name": "f", "input": {"x": 1}}]
    assert out.finish_reason == "tool_use"
    assert out.usage.prompt_tokens == 9
    assert out.usage.completion_tokens == 12
    assert out.model == "claude"


def test_responses_api_stream() -> None:
    data = b"".join(
        f"event: {d['type']}\n".encode() + b"data: " + orjson.dumps(d) + b"\n\n"
        for d in [
            {"type": "response.created", "response": {"id": "resp_1", "model": "gpt"}},
            {"type": "response.output_text.delta", "delta": "Hi "},
            {"type": "response.output_text.delta", "delta": "there"},
            {
                "type": "response.completed",
                "response": {
                    "id": "resp_1",
                    "model": "gpt",
                    "status": "completed",
                    "usage": {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6},
                },
            },
        ]
    )
    out = assemble(chunks_of(data, 9), endpoint="/v1/responses", dialect="openai", stream=True)
    assert out.text == "Hi there"
    assert out.usage.total_tokens == 6
    assert out.finish_reason == "completed"


def test_empty_response() -> None:
    out = assemble([], endpoint="/v1/chat/completions", dialect="openai", stream=True)
    assert out.text == ""
    assert out.first_token_offset_ns is None


def test_stream_without_its_end_event_is_incomplete() -> None:
    from consumers.exchange.assemble import final_outcome

    whole = sse(delta("a"), delta("b"))
    cut = sse(delta("a"), delta("b"), done=False)
    for data, expected in ((whole, "ok"), (cut, "upstream_incomplete")):
        out = assemble(
            chunks_of(data, 7), endpoint="/v1/chat/completions", dialect="openai", stream=True
        )
        assert out.text == "ab"
        assert final_outcome("ok", None, None, out)[0] == expected
    body = orjson.dumps({"choices": [{"index": 0, "message": {"content": "x"}}]})
    out = assemble(
        chunks_of(body, 5), endpoint="/v1/chat/completions", dialect="openai", stream=False
    )
    assert final_outcome("ok", None, None, out) == ("ok", "", "")
    # The proxy's own verdict (a timeout, say) is never overwritten.
    assert (
        final_outcome(
            "upstream_timeout",
            "ReadTimeout",
            "x",
            assemble(
                chunks_of(cut, 7), endpoint="/v1/chat/completions", dialect="openai", stream=True
            ),
        )[0]
        == "upstream_timeout"
    )
