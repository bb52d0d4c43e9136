"""The fake upstream answers a body it cannot use as the providers do: 400 in their JSON error
shape, which the official SDKs raise as ``BadRequestError`` without retrying."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from deploy.local.fake_upstream import RECEIVED, create_fake_upstream

OPENAI_PATHS = ("/chat/completions", "/completions", "/embeddings", "/responses")
ANTHROPIC_PATHS = ("/v1/messages", "/v1/messages/count_tokens")

# (what the SDK sends: keyword arguments of its low-level ``post``)
BAD_BODIES: dict[str, dict[str, Any]] = {
    "invalid-json": {"content": b'{"model": "m", "messages": [', "options": {
        "headers": {"Content-Type": "application/json"}}},
    "empty": {"content": b"", "options": {"headers": {"Content-Type": "application/json"}}},
    "array": {"body": [{"role": "user", "content": "hi"}]},
    "scalar": {"body": "hello"},
    "multipart": {"body": {"model": "m"}, "files": [("file", ("a.txt", b"hello"))],
                  "options": {"headers": {"Content-Type": "multipart/form-data"}}},
    "wrong-type": {"body": {"model": "m", "n": "two", "messages": "hi", "input": 3,
                            "max_tokens": "x", "prompt": 1}},
}  # fmt: skip


@pytest.fixture
async def fake() -> AsyncIterator[tuple[str, web.Application]]:
    app = create_fake_upstream()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
@pytest.mark.parametrize("path", OPENAI_PATHS)
async def test_openai_sdk_gets_400_in_openai_shape_once(
    fake: tuple[str, web.Application], path: str, case: str
) -> None:
    url, app = fake
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=3) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.post(path, cast_to=object, **BAD_BODIES[case])
    error = raised.value
    assert error.status_code == 400
    assert isinstance(error.body, dict)
    assert error.body["type"] == "invalid_request_error"
    assert error.body["message"]
    assert error.response.json()["error"]["type"] == "invalid_request_error"
    assert len(app[RECEIVED]) == 1  # not retried


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
@pytest.mark.parametrize("path", ANTHROPIC_PATHS)
async def test_anthropic_sdk_gets_400_in_anthropic_shape_once(
    fake: tuple[str, web.Application], path: str, case: str
) -> None:
    url, app = fake
    async with anthropic.AsyncAnthropic(
        base_url=url, api_key="sk-ant-test", max_retries=3
    ) as client:
        with pytest.raises(anthropic.BadRequestError) as raised:
            await client.post(path, cast_to=object, **BAD_BODIES[case])
    doc = raised.value.response.json()
    assert raised.value.status_code == 400
    assert doc["type"] == "error"
    assert doc["error"]["type"] == "invalid_request_error"
    assert doc["error"]["message"]
    assert raised.value.request_id == raised.value.response.headers["request-id"]
    assert len(app[RECEIVED]) == 1  # not retried


async def test_well_formed_requests_are_still_answered(fake: tuple[str, web.Application]) -> None:
    url, _ = fake
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test") as client:
        chat = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi there"}]
        )
    assert chat.choices[0].message.content == "Echo: hi there"
    async with anthropic.AsyncAnthropic(base_url=url, api_key="sk-ant-test") as claude:
        message = await claude.messages.create(
            model="claude-fake", max_tokens=16, messages=[{"role": "user", "content": "hi there"}]
        )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: hi there"
