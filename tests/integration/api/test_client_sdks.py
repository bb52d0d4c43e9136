"""Every SDK of docs/CLIENTS.md, configured by its base URL exactly as that page says, through
the proxy; each call answered and captured."""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import orjson

from tests.integration.conftest import Pipeline
from tests.integration.sqlclients.conftest import NODE_DIR, require, run_tool, tool

ECHO = "Echo: name three primes"  # the fake upstream echoes the last user message


async def _captured(api: Pipeline, request_id: str) -> dict[str, Any]:
    return await api.exchange(request_id, "outcome, status, response_text, endpoint")


async def test_javascript_sdks_with_their_documented_base_urls(api: Pipeline) -> None:
    for package in ("openai", "@anthropic-ai/sdk", "ai", "@ai-sdk/openai", "@ai-sdk/anthropic"):
        require(NODE_DIR / "node_modules" / package, f"{package} (npm)")
    out = await run_tool(tool("node"), "sdks.mjs", api.proxy_url, cwd=NODE_DIR)
    # The AI SDK may print its own warnings on stdout; our lines are the JSON ones.
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith('{"client"')]
    calls = {line["client"]: line for line in lines}
    answered = ["openai-node", "anthropic-node", "ai-openai-chat", "ai-openai-chat-stream",
                "ai-anthropic"]  # fmt: skip
    assert set(calls) == {*answered, "ai-anthropic-without-v1"}, out
    for client in answered:
        assert calls[client]["text"] == ECHO, calls[client]
        row = await _captured(api, calls[client]["requestId"])
        assert row["outcome"] == "ok", (client, row)
        assert row["response_text"] == ECHO, (client, row)
    # createAnthropic without /v1: Anthropic's own 404, which the SDK reports, and captured.
    wrong = calls["ai-anthropic-without-v1"]
    failure = orjson.loads(wrong["text"])
    assert failure["status"] == 404
    assert failure["body"]["type"] == "error"
    assert failure["body"]["error"]["type"] == "not_found_error"
    row = await _captured(api, wrong["requestId"])
    assert row["outcome"] == "rejected"
    assert row["status"] == 404


async def _captured_by_prompt(api: Pipeline, prompt: str) -> dict[str, Any]:
    rows = await api.wait_for(
        "SELECT outcome, response_text, path FROM exchanges FINAL "
        "WHERE position(request_body, {prompt:String}) > 0",
        {"prompt": prompt},
        lambda rows: len(rows) == 1,
    )
    return dict(zip(("outcome", "response_text", "path"), rows[0], strict=True))


async def test_langchain_chat_models_with_their_documented_base_urls(api: Pipeline) -> None:
    script = NODE_DIR.parent / "python" / "langchain_sdks.py"
    out = await run_tool(sys.executable, str(script), api.proxy_url)
    calls = [orjson.loads(line) for line in out.splitlines()]
    paths = {
        "langchain-openai": "/v1/chat/completions",
        "langchain-openai-stream": "/v1/chat/completions",
        "langchain-anthropic": "/v1/messages",
        "langchain-anthropic-stream": "/v1/messages",
    }
    assert [call["client"] for call in calls] == list(paths), out
    for call in calls:
        assert call["text"] == f"Echo: {call['prompt']}", call
        row = await _captured_by_prompt(api, call["prompt"])
        assert row == {
            "outcome": "ok",
            "response_text": call["text"],
            "path": paths[call["client"]],
        }, call


# LiteLLM (a 44 MB wheel plus its dependencies, too heavy for the test extras) is exercised by
# the exact requests litellm 1.110.2's `completion()` sends with the configuration of
# docs/CLIENTS.md, recorded from it on a loopback listener: the `openai/` route is the openai
# SDK at `api_base` + /chat/completions; the `anthropic/` route posts to `api_base` + /v1/messages.
LITELLM_REQUESTS = {
    'model="openai/gpt-4o-mini", api_base=".../v1"': (
        "/v1/chat/completions",
        {"Authorization": "Bearer sk-x", "Accept": "application/json",
         "Content-Type": "application/json", "User-Agent": "OpenAI/Python 3.57.0",
         "x-stainless-lang": "python", "x-stainless-raw-response": "true",
         "x-stainless-retry-count": "0"},
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"name three primes"}]}',
    ),
    'model="anthropic/claude-test-model", api_base="..."': (
        "/v1/messages",
        {"User-Agent": "litellm/1.110.2", "anthropic-version": "2023-06-01",
         "Accept": "application/json", "Content-Type": "application/json", "x-api-key": "sk-x"},
        b'{"model": "claude-test-model", "messages": [{"role": "user", "content": [{"type": '
        b'"text", "text": "name three primes"}]}], "max_tokens": 64}',
    ),
}  # fmt: skip


async def test_litellm_requests_as_it_sends_them(api: Pipeline) -> None:
    async with aiohttp.ClientSession() as http:
        for config, (path, headers, body) in LITELLM_REQUESTS.items():
            async with http.post(f"{api.proxy_url}{path}", data=body, headers=headers) as response:
                assert response.status == 200, config
                answer = await response.json()
                request_id = response.headers["x-logorhythms-request-id"]
            text = (
                answer["content"][0]["text"]
                if path == "/v1/messages"
                else answer["choices"][0]["message"]["content"]
            )
            assert text == ECHO, config
            row = await _captured(api, request_id)
            assert (row["outcome"], row["response_text"]) == ("ok", ECHO), config
