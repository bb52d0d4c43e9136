"""Usage estimated when the upstream sends none, through the proxy with the official SDK: a
streamed tool call counts its arguments, a prompt counts its tool definitions."""

from __future__ import annotations

import openai

from consumers.exchange.usage import (
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_PRIMING_TOKENS,
    text_tokens,
)
from tests.integration.api.conftest import REQUEST_ID
from tests.integration.conftest import Pipeline

QUESTION = "what is the weather in Oslo"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather forecast for a city, today and the next days.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}


async def test_streamed_tool_call_without_usage_is_estimated_from_its_arguments(
    api: Pipeline, oai: openai.AsyncOpenAI
) -> None:
    raw = await oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
    )
    name, arguments, usage = "", "", None
    async for chunk in raw.parse():
        usage = chunk.usage or usage
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name += (call.function.name or "") if call.function else ""
            arguments += (call.function.arguments or "") if call.function else ""
    assert usage is None
    assert name == "get_weather"
    row = await api.exchange(
        raw.headers[REQUEST_ID],
        "usage_estimated, prompt_tokens, completion_tokens, total_tokens, tool_calls_count",
    )
    assert row["tool_calls_count"] == 1
    assert row["usage_estimated"] is True
    assert row["completion_tokens"] == text_tokens(name) + text_tokens(arguments) > 5
    # The tool definition is part of the prompt: well over the question and its framing alone.
    bare = text_tokens(QUESTION) + MESSAGE_OVERHEAD_TOKENS + REPLY_PRIMING_TOKENS
    assert row["prompt_tokens"] > bare + text_tokens(WEATHER_TOOL["function"]["description"])
    assert row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"]
