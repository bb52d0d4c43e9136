"""LangChain's chat models, configured exactly as docs/CLIENTS.md says, against the proxy at
argv[1]. Prints one JSON line per call: the prompt sent and the text received.

Run in its own process by tests/integration/api/test_client_sdks.py: LangChain caches its HTTP
clients for the life of the process, which the test's event loop must not inherit.
"""

from __future__ import annotations

import asyncio
import json
import sys

from langchain_anthropic import ChatAnthropic
from langchain_openai import ChatOpenAI


async def main(base: str) -> None:
    key = "sk-client-canary-langchain-8a3f"
    models = {
        # OpenAI-compatible: the base URL with /v1, as OPENAI_BASE_URL.
        "langchain-openai": ChatOpenAI(
            model="gpt-4o-mini", base_url=f"{base}/v1", api_key=key, max_retries=0
        ),
        # Anthropic: the base URL without /v1, as ANTHROPIC_BASE_URL.
        "langchain-anthropic": ChatAnthropic(
            model="claude-test-model", base_url=base, api_key=key, max_retries=0
        ),
    }
    for client, model in models.items():
        whole, parts = (f"name three primes via {client}, {way}" for way in ("whole", "streamed"))
        reply = await model.ainvoke(whole)
        print(json.dumps({"client": client, "prompt": whole, "text": reply.content}))
        streamed = "".join([str(chunk.content) async for chunk in model.astream(parts)])
        print(json.dumps({"client": f"{client}-stream", "prompt": parts, "text": streamed}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
