"""Every SDK of docs/CLIENTS.md, configured by its base URL exactly as that page says, through
the proxy; each call answered and captured."""

from __future__ import annotations

import sys
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


def _litellm_calls() -> list[tuple[str, bool]]:
    """The prompts the documented LiteLLM snippet sends, each once whole and once streamed, in
    the order it prints their answers."""
    return [
        (f"Say hi {way}via {route}", stream)
        for way in ("", "asynchronously ")
        for route in ("openai", "anthropic")
        for stream in (False, True)
    ]


async def test_litellm_as_documented_completion_and_acompletion_streamed_or_not(
    api: Pipeline,
) -> None:
    """docs/CLIENTS.md's LiteLLM snippet, run as written: ``completion`` and ``acompletion``,
    streamed and not, on the ``openai/`` route (``api_base`` with /v1) and the ``anthropic/``
    route (without); each answer is the echo, and each call is one captured row with the
    conversation parsed, the text the client got and the usage it was told."""
    script = NODE_DIR.parent / "python" / "litellm_snippet.py"
    out = await run_tool(sys.executable, str(script), api.proxy_url, timeout_s=180)
    lines = out.splitlines()
    calls = _litellm_calls()
    assert len(lines) == len(calls), out
    for (prompt, stream), line in zip(calls, lines, strict=True):
        # A whole answer's line ends with the total tokens LiteLLM reported.
        text, total = (line, "") if stream else line.rsplit(" ", 1)
        assert text == f"Echo: {prompt}", (prompt, stream, out)
        rows = await api.wait_for(
            "SELECT outcome, response_text, messages, prompt_tokens, completion_tokens, path "
            "FROM exchanges FINAL WHERE position(request_body, {prompt:String}) > 0 "
            "AND stream = {stream:Bool}",
            {"prompt": f'"{prompt}"', "stream": stream},
            lambda rows: len(rows) == 1,
        )
        outcome, response_text, messages, prompt_tokens, completion_tokens, path = rows[0]
        assert (outcome, response_text) == ("ok", text), (prompt, stream, rows)
        assert [(m["role"], m["content"]) for m in messages] == [("user", prompt)], rows
        assert path == ("/v1/messages" if "anthropic" in prompt else "/v1/chat/completions")
        assert prompt_tokens, (prompt, stream, rows)
        assert completion_tokens, (prompt, stream, rows)
        if not stream:  # the usage LiteLLM reported is the row's
            assert int(total) == prompt_tokens + completion_tokens, (prompt, rows)
