"""A request outside /v1 from an Anthropic client (the Vercel AI SDK's createAnthropic with a base
URL lacking /v1 posts to /messages) gets Anthropic's error shape and is captured as rejected;
one from any other client keeps the OpenAI-shaped 404."""

from __future__ import annotations

import aiohttp
import pytest

from tests.integration.api.conftest import REQUEST_ID
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
