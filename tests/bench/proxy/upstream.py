"""A fast fake OpenAI upstream for benchmarks: canned answers, no JSON parsing of the request.

Non-streaming requests get one fixed ``chat.completion`` document; requests whose body holds
``"stream": true`` get ``--chunks`` SSE frames, ``--delay-ms`` apart, then ``[DONE]``. The
request body is read in full (as a real provider would) but never parsed, so the upstream
stays cheap next to whatever sits in front of it.

    python -m tests.bench.proxy.upstream --port 18090 --chunks 20 --delay-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import re

import orjson
from aiohttp import web

_STREAM = re.compile(rb'"stream"\s*:\s*true')
COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1732540000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Echo: hello from the bench"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
    }
)


def sse_frame(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    doc = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1732540000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def create_upstream(chunks: int, delay_ms: float) -> web.Application:
    frames = [sse_frame(f"word{i} ") for i in range(chunks)]
    tail = sse_frame(None, "stop") + b"data: [DONE]\n\n"
    delay_s = delay_ms / 1000

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if not _STREAM.search(body[:4096]) and not _STREAM.search(body[-4096:]):
            return web.Response(body=COMPLETION, content_type="application/json")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for frame in frames:
            await response.write(frame)
            await asyncio.sleep(delay_s)
        await response.write(tail)
        await response.write_eof()
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", completions)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Fast fake OpenAI upstream for benchmarks.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    args = parser.parse_args()
    web.run_app(
        create_upstream(args.chunks, args.delay_ms),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
