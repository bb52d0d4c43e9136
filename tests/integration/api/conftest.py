"""A pipeline whose proxy routes to an OpenAI, an Anthropic and a bring-your-own-key provider.

All three are the one fake upstream, each speaking its dialect; the SDK clients are the official
ones, pointed at the proxy by their base URL only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from proxy.settings import Provider, Secret
from tests.integration.conftest import SERVICE_KEY, FakeUpstream, Pipeline, ProxyFactory

ANTHROPIC_SERVICE_KEY = "sk-ant-service-canary-93be1d"
CLIENT_KEY = "sk-client-canary-5e0c7a21"
REQUEST_ID = "x-logorhythms-request-id"


def providers(upstream_url: str) -> tuple[Provider, ...]:
    return (
        Provider(
            name="openai",
            base_url=f"{upstream_url}/v1",
            api_key=Secret(SERVICE_KEY),
        ),
        Provider(
            name="anthropic",
            base_url=upstream_url,
            dialect="anthropic",
            api_key=Secret(ANTHROPIC_SERVICE_KEY),
        ),
        Provider(
            name="groq",
            base_url=f"{upstream_url}/v1",
            models=("llama-3.1-8b-instant",),
            bring_your_own_key=True,
        ),
    )


@pytest.fixture
async def api_factory(pipeline_factory: ProxyFactory, fake_upstream: FakeUpstream) -> ProxyFactory:
    async def build(**overrides: Any) -> Pipeline:
        values: dict[str, Any] = {
            "providers": providers(fake_upstream.url),
            "model_map": {"fast": "groq/llama-3.1-8b-instant"},
        }
        return await pipeline_factory(**{**values, **overrides})

    return build


@pytest.fixture
async def api(api_factory: ProxyFactory) -> Pipeline:
    return await api_factory()


@pytest.fixture
async def oai(api: Pipeline) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{api.proxy_url}/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def claude(api: Pipeline) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=api.proxy_url, api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client
