"""A request outside /v1 from an Anthropic client (the Vercel AI SDK's createAnthropic with a base
URL lacking /v1 posts to /messages) gets Anthropic's error shape and is captured as rejected;
one from any other client keeps the OpenAI-shaped 404."""

from __future__ import annotations

import aiohttp
import anthropic
import pytest

from tests.integration.api.conftest import CLIENT_KEY, REQUEST_ID
from tests.integration.conftest import Pipeline

BODY = {
    "model": "claude-test-model",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize(
    "headers",
    [
        {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-client-canary-71c2"},
        {"anthropic-version": "2023-06-01"},
        {"x-api-key": "sk-ant-client-canary-71c2"},
    ],
    ids=["both", "anthropic-version", "x-api-key"],
)
async def test_anthropic_headers_outside_v1_get_anthropics_404_and_are_captured(
    api: Pipeline, headers: dict[str, str]
) -> None:
    before = len(api.upstream.received)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{api.proxy_url}/messages", json=BODY, headers=headers) as response,
    ):
        assert response.status == 404
        body = await response.json()
        request_id = response.headers[REQUEST_ID]
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert "/v1" in body["error"]["message"]
    assert len(api.upstream.received) == before
    row = await api.exchange(request_id, "status, outcome, error_type, path, request_body")
    assert row["status"] == 404
    assert row["outcome"] == "rejected"
    assert row["error_type"] == "unknown_path"
    assert row["path"] == "/messages"


async def test_other_clients_outside_v1_keep_the_openai_404(api: Pipeline) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{api.proxy_url}/chat/completions", json=BODY) as response,
    ):
        assert response.status == 404
        body = await response.json()
        assert REQUEST_ID not in response.headers  # not an exchange: nothing captured
    assert body["error"]["code"] == "unknown_url"


async def test_a_base_url_ending_in_v1_given_to_anthropics_sdk_is_told_so(api: Pipeline) -> None:
    """Anthropic's SDK adds /v1 itself: given ".../v1" it posts to /v1/v1/messages, which no
    provider serves. The answer says what to change, in Anthropic's shape, and is captured."""
    before = len(api.upstream.received)
    async with anthropic.AsyncAnthropic(
        base_url=f"{api.proxy_url}/v1", api_key=CLIENT_KEY, max_retries=0
    ) as claude:
        with pytest.raises(anthropic.NotFoundError) as caught:
            await claude.messages.create(**BODY)  # type: ignore[call-overload]
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "repeats /v1" in caught.value.message
    assert "without /v1" in caught.value.message
    assert len(api.upstream.received) == before
    request_id = caught.value.response.headers[REQUEST_ID]
    row = await api.exchange(request_id, "status, outcome, error_type, path")
    assert row == {
        "status": 404,
        "outcome": "rejected",
        "error_type": "unknown_path",
        "path": "/v1/v1/messages",
    }
