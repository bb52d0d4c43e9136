"""A small OpenAI- and Anthropic-compatible upstream speaking the real wire protocols.

Used by `make up` when no real provider key is configured (so the pipeline can be tried on a
machine without internet) and by the tests. It answers by echoing the last user message word by
word, on every endpoint the proxy serves: chat completions (tool calls streamed in pieces, JSON
mode, ``n`` > 1, logprobs, ``stream_options.include_usage``), legacy completions, embeddings
(float or base64), the Responses API (with its SSE event types), models, files, and Anthropic
Messages (its SSE event types, tool use, ``count_tokens``). Request headers steer it, so tests can
provoke what real providers do, on every streaming endpoint alike:

- ``x-fake-chunks``: number of content pieces (default: one per word)
- ``x-fake-pad-bytes``: append this many bytes of padding to every content piece
- ``x-fake-delay-ms``: pause between SSE events
- ``x-fake-head-delay-ms``: pause before the response head (any endpoint)
- ``x-fake-status``: answer with this HTTP error status and a provider-shaped error body
- ``x-fake-stall-after``: stop sending (but keep the connection open) after N events
- ``x-fake-reset-after``: drop the connection after N events
- ``x-fake-error-in-stream``: send the dialect's error event after the first content event
- ``x-fake-malformed``: send a keep-alive comment and an event with invalid JSON after the first
  content event
- ``x-fake-echo-auth``: answer 401 with the credentials received (Authorization, x-api-key, query)
  echoed in the error message, as real providers do with "Incorrect API key provided: sk-…"
- ``x-fake-redirect``: answer 302 with this Location (a proxy must not follow it)

A body it cannot use (multipart, empty, invalid JSON, a JSON array or scalar, a field of the wrong
type) is answered as the providers answer it: 400 with their JSON error
(``invalid_request_error``), on every endpoint, so SDKs raise their bad-request error and do not
retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from deploy.local.fake_upstream.anthropic import count_tokens, messages
from deploy.local.fake_upstream.openai import (
    chat_completions,
    completions,
    embeddings,
    files,
    model,
    models,
    responses,
)
from deploy.local.fake_upstream.wire import (
    header_int,
    invalid_request,
    pause,
)


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """What the fake upstream was sent, so tests can check what the proxy forwarded."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    peer_port: int = 0  # the proxy's side of the connection: equal ports mean a reused one


RECEIVED = web.AppKey("received", list[ReceivedRequest])


# --- the app ------------------------------------------------------------------------------------


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    request.app[RECEIVED].append(
        ReceivedRequest(
            request.method,
            request.path,
            request.query_string,
            list(request.headers.items()),
            await request.read(),
            (request.transport.get_extra_info("peername") or ("", 0))[1]
            if request.transport is not None
            else 0,
        )
    )
    head_delay_ms = header_int(request, "x-fake-head-delay-ms")
    if head_delay_ms:
        await pause(request, head_delay_ms / 1000)
    try:
        return await handler(request)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        # A field of the wrong type (``"messages": "hi"``, ``"n": "two"``): providers answer
        # 400, never a 500 with a traceback that SDKs would retry.
        dialect = "anthropic" if request.path.startswith("/v1/messages") else "openai"
        return invalid_request(dialect, f"Invalid request body: {type(exc).__name__}")


ROUTES: tuple[tuple[str, str, Callable[[web.Request], Any]], ...] = (
    ("POST", "/v1/chat/completions", chat_completions),
    ("POST", "/v1/completions", completions),
    ("POST", "/v1/embeddings", embeddings),
    ("POST", "/v1/responses", responses),
    ("GET", "/v1/models", models),
    ("GET", "/v1/models/{model}", model),
    ("GET", "/v1/files", files),
    ("POST", "/v1/messages", messages),
    ("POST", "/v1/messages/count_tokens", count_tokens),
)


def create_fake_upstream() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_record])
    app[RECEIVED] = []
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run the fake OpenAI/Anthropic upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    web.run_app(create_fake_upstream(), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
