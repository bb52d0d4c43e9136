"""The hand-over check catches each way ddtrace loses spans without raising."""

from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import web

from tests.integration.conftest import serve
from tests.integration.datadog.conftest import REPO, ApmTestAgent


async def _probe(agent_url: str, **extra_env: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DD_")}
    env.update(DD_TRACE_AGENT_URL=agent_url, **extra_env)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.datadog.handover_probe", env=env, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode()
    return out.decode()


async def test_a_flush_the_agent_accepted_is_handed_over(test_agent: ApmTestAgent) -> None:
    out = await _probe(test_agent.url)
    assert "HANDED_OVER" in out.splitlines()


async def test_an_agent_answering_with_an_error_status_is_not_a_hand_over() -> None:
    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503, text="overloaded")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner, url = await serve(app)
    try:
        out = await _probe(url)
    finally:
        await runner.cleanup()
    assert "NOT_HANDED_OVER" in out


async def test_a_span_dropped_for_a_full_buffer_is_not_a_hand_over(
    test_agent: ApmTestAgent,
) -> None:
    # A trace buffer smaller than the span: ddtrace drops it with a warning and never raises.
    out = await _probe(test_agent.url, DD_TRACE_WRITER_BUFFER_SIZE_BYTES="4096")
    assert "NOT_HANDED_OVER" in out
