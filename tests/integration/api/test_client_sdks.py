"""Every SDK of docs/CLIENTS.md, configured by its base URL exactly as that page says, through
the proxy; each call answered and captured."""

from __future__ import annotations

from typing import Any

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
