"""The Anthropic Messages API through the official SDK, only its base URL changed."""

from __future__ import annotations

import anthropic
import orjson
import pytest

from tests.integration.api.conftest import ANTHROPIC_SERVICE_KEY, CLIENT_KEY, REQUEST_ID
from tests.integration.conftest import Pipeline

USER = [{"role": "user", "content": "name three rivers"}]
BETA = "prompt-caching-2024-07-31"


async def test_messages_whole_and_headers_forwarded(
    api: Pipeline, claude: anthropic.AsyncAnthropic
) -> None:
    raw = await claude.messages.with_raw_response.create(
        model="claude-test-model",
        max_tokens=64,
        system="be terse",
        messages=USER,  # type: ignore[arg-type]
        extra_headers={"anthropic-beta": BETA},
    )
    message = await raw.parse()
    assert message.content[0].text == "Echo: name three rivers"  # type: ignore[union-attr]
    sent = api.upstream.received[-1]
    headers = {k.lower(): v for k, v in sent.headers}
    assert headers["x-api-key"] == ANTHROPIC_SERVICE_KEY
    assert headers["anthropic-beta"] == BETA
    assert CLIENT_KEY not in str(sent.headers)
    row = await api.exchange(raw.headers[REQUEST_ID])
    assert row["dialect"] == "anthropic"
    assert row["endpoint"] == "/v1/messages"
    assert row["provider"] == "anthropic"
    assert row["upstream_url"] == f"{api.upstream.url}/v1/messages"
    assert row["system_prompt"] == "be terse"
    assert row["response_text"] == message.content[0].text  # type: ignore[union-attr]
    assert row["prompt_tokens"] == message.usage.input_tokens
    assert row["completion_tokens"] == message.usage.output_tokens
    assert row["finish_reason"] == "end_turn"
    assert row["upstream_request_id"] == raw.headers["request-id"]
    assert row["response_headers"]["anthropic-ratelimit-requests-remaining"] == "999"
    assert row["request_headers"]["anthropic-beta"] == BETA
    assert row["request_headers"]["anthropic-version"] == headers["anthropic-version"]
    assert row["client_key_fingerprint"].startswith("fp:"), row["request_headers"]


async def test_messages_stream_with_event_types(
    api: Pipeline, claude: anthropic.AsyncAnthropic
) -> None:
    raw = await claude.messages.with_raw_response.create(
        model="claude-test-model",
        max_tokens=64,
        messages=USER,  # type: ignore[arg-type]
        stream=True,
    )
    kinds = []
    text = ""
    async for event in await raw.parse():
        kinds.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "ping" not in kinds or kinds.index("ping") > 0
    assert text == "Echo: name three rivers"
    row = await api.exchange(raw.headers[REQUEST_ID])
    assert row["stream"] is True
    assert row["response_text"] == text
    assert row["finish_reason"] == "end_turn"
    assert row["usage_estimated"] is False
    assert row["completion_tokens"] == 4
    assert row["outcome"] == "ok"


async def test_tool_use_streamed_in_pieces(api: Pipeline, claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(
        model="claude-test-model",
        max_tokens=64,
        messages=USER,  # type: ignore[arg-type]
        tools=[{"name": "find_rivers", "input_schema": {"type": "object"}}],
    ) as stream:
        partials = [e.partial_json async for e in stream if e.type == "input_json"]
        message = await stream.get_final_message()
        request_id = stream.response.headers[REQUEST_ID]
    assert len(partials) >= 3
    tool_use = message.content[0]
    assert tool_use.type == "tool_use"
    assert tool_use.input == {"text": "name three rivers"}
    row = await api.exchange(request_id, "tool_calls, tool_calls_count, finish_reason")
    assert row["tool_calls_count"] == 1
    assert orjson.loads(row["tool_calls"])[0]["input"] == {"text": "name three rivers"}
    assert row["finish_reason"] == "tool_use"


async def test_count_tokens(api: Pipeline, claude: anthropic.AsyncAnthropic) -> None:
    raw = await claude.messages.with_raw_response.count_tokens(
        model="claude-test-model",
        messages=USER,  # type: ignore[arg-type]
    )
    assert (await raw.parse()).input_tokens == 3
    row = await api.exchange(
        raw.headers[REQUEST_ID], "endpoint, prompt_tokens, usage_estimated, outcome"
    )
    assert row == {
        "endpoint": "/v1/messages/count_tokens",
        "prompt_tokens": 3,
        "usage_estimated": False,
        "outcome": "ok",
    }


async def test_models_come_from_the_anthropic_provider(
    api: Pipeline, claude: anthropic.AsyncAnthropic
) -> None:
    raw = await claude.models.with_raw_response.list()
    assert [m.id async for m in await raw.parse()] == ["claude-fake"]
    assert api.upstream.received[-1].path == "/v1/models"
    row = await api.exchange(raw.headers[REQUEST_ID], "dialect, provider, method, status")
    assert row == {"dialect": "anthropic", "provider": "anthropic", "method": "GET", "status": 200}


async def test_errors_in_anthropic_shape(api: Pipeline, claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as limited:
        await claude.messages.create(
            model="claude-test-model",
            max_tokens=64,
            messages=USER,  # type: ignore[arg-type]
            extra_headers={"x-fake-status": "429"},
        )
    assert limited.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "fake 429"},
    }
    row = await api.exchange(
        limited.value.response.headers[REQUEST_ID],
        "status, outcome, error_message, provider_error_type, provider_error_message",
    )
    assert row == {
        "status": 429,
        "outcome": "upstream_http_error",
        "error_message": "fake 429",
        "provider_error_type": "rate_limit_error",
        "provider_error_message": "fake 429",
    }

    before = len(api.upstream.received)
    with pytest.raises(anthropic.NotFoundError) as unknown:
        await claude.messages.create(
            model="fast",  # an alias for an OpenAI-dialect provider, which cannot serve Messages
            max_tokens=64,
            messages=USER,  # type: ignore[arg-type]
        )
    assert unknown.value.body["type"] == "error"  # type: ignore[index]
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert len(api.upstream.received) == before
