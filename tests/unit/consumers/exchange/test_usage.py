"""The usage estimator: every generated part and every prompt part counts, streamed or not, and
an exchange without provider usage gets the estimate in its row."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from consumers.exchange.assemble import ChunkIn
from consumers.exchange.usage import (
    IMAGE_TOKENS_ANTHROPIC,
    IMAGE_TOKENS_OPENAI,
    IMAGE_TOKENS_OPENAI_LOW,
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_PRIMING_TOKENS,
    completion_tokens,
    estimate,
    prompt_tokens,
    text_tokens,
)
from tests.unit.consumers.clickhouse.test_rows import completed, request, row

ARGS = '{"city": "Paris", "unit": "celsius", "days": 14}'
CHAT = "/v1/chat/completions"


def sse(*docs: dict[str, Any], done: bool = True) -> list[bytes]:
    frames = [b"data: " + orjson.dumps(d) + b"\n\n" for d in docs]
    return [*frames, b"data: [DONE]\n\n"] if done else frames


def named(*pairs: tuple[str, dict[str, Any]]) -> list[bytes]:
    return [f"event: {n}\ndata: ".encode() + orjson.dumps(d) + b"\n\n" for n, d in pairs]


# --- text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "o200k"),
    [  # counts from OpenAI's o200k_base tokenizer (tests/bench/consumers/o200k_count.mjs)
        ("hello world", 2),
        ('{"text": "abc def"}', 7),
        ("The quick brown fox jumps over the lazy dog.", 10),
    ],
)
def test_text_is_counted_close_to_the_tokenizer(text: str, o200k: int) -> None:
    assert abs(text_tokens(text) - o200k) <= max(1, o200k // 5)


def test_code_and_json_count_more_than_a_quarter_of_their_characters() -> None:
    code = 'def f(x):\n    return {"a": [1, 2, 3], "b": (x or {})}\n' * 20
    assert text_tokens(code) > len(code) / 4
    assert text_tokens("") == 0


# --- the completion -----------------------------------------------------------------------------


def test_streamed_tool_call_arguments_count_as_much_as_whole_ones() -> None:
    whole = orjson.dumps(
        {
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "weather", "arguments": ARGS},
                            }
                        ],
                    },
                }
            ]
        }
    )
    pieces = [ARGS[i : i + 5] for i in range(0, len(ARGS), 5)]
    streamed = sse(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "c1", "type": "function",
             "function": {"name": "weather", "arguments": ""}}]}}]},
        *({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": p}}]}}]} for p in pieces),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    )  # fmt: skip
    got_stream = completion_tokens(streamed, endpoint=CHAT, dialect="openai", stream=True)
    got_whole = completion_tokens([whole], endpoint=CHAT, dialect="openai", stream=False)
    assert got_stream == got_whole == text_tokens("weather") + text_tokens(ARGS)
    assert got_stream > 10


def test_refusal_and_reasoning_text_are_generated_tokens() -> None:
    base = completion_tokens(sse({"choices": [{"index": 0, "delta": {"content": "Sorry."}}]}),
                             endpoint=CHAT, dialect="openai", stream=True)  # fmt: skip
    more = completion_tokens(
        sse({"choices": [{"index": 0, "delta": {"content": "Sorry."}}]},
            {"choices": [{"index": 0, "delta": {"refusal": "I can't help with that request."}}]},
            {"choices": [{"index": 0, "delta": {"reasoning_content": "The user asks for x."}}]}),
        endpoint=CHAT, dialect="openai", stream=True,
    )  # fmt: skip
    assert more == base + text_tokens("I can't help with that request.") + text_tokens(
        "The user asks for x."
    )


def test_every_choice_counts() -> None:
    one = {"index": 0, "message": {"content": "alpha beta gamma"}}
    two = {"index": 1, "message": {"content": "delta epsilon"}}
    body = orjson.dumps({"choices": [one, two]})
    got = completion_tokens([body], endpoint=CHAT, dialect="openai", stream=False)
    assert got == text_tokens("alpha beta gamma") + text_tokens("delta epsilon")


def test_anthropic_tool_input_and_thinking_streamed_or_whole() -> None:
    whole = orjson.dumps(
        {
            "type": "message",
            "content": [
                {"type": "thinking", "thinking": "Need the weather.", "signature": "c2lnbmF0dXJl"},
                {"type": "tool_use", "id": "t1", "name": "weather", "input": orjson.loads(ARGS)},
            ],
        }
    )
    streamed = named(
        ("message_start", {"type": "message_start", "message": {"content": []}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "Need the "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "weather."}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "c2ln"}}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "t1", "name": "weather", "input": {}}}),
        *(("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
            "type": "input_json_delta", "partial_json": ARGS.replace(" ", "")[i : i + 7]}})
          for i in range(0, len(ARGS.replace(" ", "")), 7)),
        ("message_stop", {"type": "message_stop"}),
    )  # fmt: skip
    got_whole = completion_tokens([whole], endpoint="/v1/messages", dialect="anthropic",
                                  stream=False)  # fmt: skip
    got_stream = completion_tokens(streamed, endpoint="/v1/messages", dialect="anthropic",
                                   stream=True)  # fmt: skip
    expected = (text_tokens("Need the weather.") + text_tokens("weather")
                + text_tokens(ARGS.replace(" ", "")))  # fmt: skip
    assert got_whole == got_stream == expected


def test_responses_function_call_and_reasoning_summary_streamed_or_whole() -> None:
    output = [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Look it up."}]},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": ARGS},
        {"type": "message", "content": [{"type": "output_text", "text": "Checking now."}]},
    ]
    whole = orjson.dumps({"object": "response", "output": output})
    streamed = named(
        ("response.created", {"type": "response.created", "response": {"output": []}}),
        ("x", {"type": "response.reasoning_summary_text.delta", "output_index": 0,
               "summary_index": 0, "delta": "Look it up."}),
        ("x", {"type": "response.output_item.added", "output_index": 1,
               "item": {"type": "function_call", "name": "weather", "arguments": ""}}),
        ("x", {"type": "response.function_call_arguments.delta", "output_index": 1,
               "delta": ARGS[:10]}),
        ("x", {"type": "response.function_call_arguments.delta", "output_index": 1,
               "delta": ARGS[10:]}),
        ("x", {"type": "response.output_text.delta", "output_index": 2, "content_index": 0,
               "delta": "Checking now."}),
        ("response.completed", {"type": "response.completed",
                                "response": {"output": output, "usage": None}}),
    )  # fmt: skip
    expected = sum(map(text_tokens, ("Look it up.", "weather", ARGS, "Checking now.")))
    assert completion_tokens([whole], endpoint="/v1/responses", dialect="openai",
                             stream=False) == expected  # fmt: skip
    assert completion_tokens(streamed, endpoint="/v1/responses", dialect="openai",
                             stream=True) == expected  # fmt: skip


def test_unreadable_responses_count_nothing() -> None:
    assert completion_tokens([b"<html>502</html>"], endpoint=CHAT, dialect="openai",
                             stream=False) == 0  # fmt: skip
    assert completion_tokens([], endpoint=CHAT, dialect="openai", stream=True) == 0


# --- the prompt ---------------------------------------------------------------------------------


def chat(*messages: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"model": "m", "messages": list(messages), **extra})


def test_every_prompt_part_adds_its_tokens() -> None:
    user = {"role": "user", "content": "What is the weather in Paris?"}
    base = prompt_tokens(chat(user), dialect="openai")
    assert base == text_tokens(user["content"]) + MESSAGE_OVERHEAD_TOKENS + REPLY_PRIMING_TOKENS
    system = {"role": "system", "content": "You are terse."}
    assert prompt_tokens(chat(system, user), dialect="openai") == (
        base + text_tokens("You are terse.") + MESSAGE_OVERHEAD_TOKENS
    )
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip
    assert prompt_tokens(chat(user, tools=tools), dialect="openai") > base + 10
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": ARGS}}
        ],
    }
    result = {"role": "tool", "tool_call_id": "c1", "content": "18 degrees and sunny"}
    assert prompt_tokens(chat(user, call, result), dialect="openai") == (
        base + text_tokens("weather") + text_tokens(ARGS) + text_tokens("18 degrees and sunny")
        + 2 * MESSAGE_OVERHEAD_TOKENS
    )  # fmt: skip


def test_anthropic_system_tool_use_and_tool_results_count() -> None:
    def body(*messages: dict[str, Any], **extra: Any) -> bytes:
        return orjson.dumps({"model": "c", "max_tokens": 10, "messages": list(messages), **extra})

    user = {"role": "user", "content": "Weather in Paris?"}
    base = prompt_tokens(body(user), dialect="anthropic")
    with_system = prompt_tokens(
        body(user, system=[{"type": "text", "text": "Be terse.", "cache_control": {
            "type": "ephemeral"}}]), dialect="anthropic",
    )  # fmt: skip
    assert with_system == base + text_tokens("Be terse.")
    use = {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}}
        ],
    }
    result = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "text", "text": "18 degrees and sunny"}]}]}  # fmt: skip
    assert prompt_tokens(body(user, use, result), dialect="anthropic") == (
        base + text_tokens("weather") + text_tokens('{"city":"Paris"}')
        + text_tokens("18 degrees and sunny") + 2 * MESSAGE_OVERHEAD_TOKENS
    )  # fmt: skip


def test_images_count_by_the_documented_rule_not_by_their_bytes() -> None:
    data = "data:image/png;base64," + "A" * 1_000_000

    def with_image(detail: str | None) -> bytes:
        image: dict[str, Any] = {"url": data} if detail is None else {"url": data, "detail": detail}
        parts = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": image},
        ]
        return chat({"role": "user", "content": parts})

    base = prompt_tokens(chat({"role": "user", "content": "What is this?"}), dialect="openai")
    assert prompt_tokens(with_image(None), dialect="openai") == base + IMAGE_TOKENS_OPENAI
    assert prompt_tokens(with_image("low"), dialect="openai") == base + IMAGE_TOKENS_OPENAI_LOW
    claude = orjson.dumps({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "A" * 1_000_000}}]}]})  # fmt: skip
    assert prompt_tokens(claude, dialect="anthropic") == (
        IMAGE_TOKENS_ANTHROPIC + MESSAGE_OVERHEAD_TOKENS + REPLY_PRIMING_TOKENS
    )


def test_responses_instructions_and_input_items_count() -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": ARGS},
        {"type": "function_call_output", "call_id": "c1", "output": "18 degrees"},
    ]
    got = prompt_tokens(
        orjson.dumps({"instructions": "Be terse.", "input": items}), dialect="openai"
    )
    assert got == (
        text_tokens("Be terse.") + text_tokens("Weather in Paris?") + MESSAGE_OVERHEAD_TOKENS
        + text_tokens("weather") + text_tokens(ARGS) + text_tokens("18 degrees")
    )  # fmt: skip


def test_legacy_prompts_and_embedding_inputs_count() -> None:
    assert prompt_tokens(orjson.dumps({"prompt": "Say hi"}), dialect="openai") == text_tokens(
        "Say hi"
    )
    assert prompt_tokens(orjson.dumps({"input": [5, 6, 7, 8]}), dialect="openai") == 4
    assert prompt_tokens(orjson.dumps({"input": "one two"}), dialect="openai") == 2
    assert prompt_tokens(b"not json", dialect="openai") == 0
    assert prompt_tokens(b"[1, 2]", dialect="openai") == 0


def test_a_large_prompt_is_counted_whole() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 100_000  # 4.5 MB
    got = prompt_tokens(chat({"role": "user", "content": text}), dialect="openai")
    assert got == text_tokens(text) + MESSAGE_OVERHEAD_TOKENS + REPLY_PRIMING_TOKENS
    assert 900_000 < got < 1_100_000  # o200k: 10 tokens per sentence


# --- the row ------------------------------------------------------------------------------------


def test_a_streamed_tool_call_without_usage_gets_completion_tokens_in_its_row() -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    body = chat({"role": "user", "content": "Weather in Paris?"}, stream=True, tools=tools)
    frames = sse(
        {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "c1", "type": "function",
             "function": {"name": "weather", "arguments": ARGS[:20]}}]}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": ARGS[20:]}}]}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    )  # fmt: skip
    chunks = [ChunkIn(i + 1, i * 1000, frame) for i, frame in enumerate(frames)]
    got = row(request(body=body), chunks, completed(chunk_count=len(chunks)))
    expected = estimate(body, frames, endpoint=CHAT, dialect="openai", stream=True)
    assert got["usage_estimated"] is True
    assert (
        got["completion_tokens"]
        == expected.completion_tokens
        == (text_tokens("weather") + text_tokens(ARGS))
    )
    assert got["prompt_tokens"] == expected.prompt_tokens > text_tokens("Weather in Paris?")
    assert got["total_tokens"] == expected.total_tokens
