"""proxy/protocol.py: the aiohttp internals it builds on are still there, and its pure parts."""

from __future__ import annotations

import inspect

import orjson
import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from proxy.guard import GuardStats
from proxy.protocol import _ANTHROPIC_BYTES, ApiServer, dialect_of, not_a_forward_proxy


def test_the_aiohttp_internals_relied_on_are_there() -> None:
    # Should any of these move, the API-shaped answers silently turn back into plain text:
    # fail here first, by name.
    assert {"_messages", "_lingering_time"} <= set(RequestHandler.__slots__)
    assert {"status", "exc", "message"} <= set(inspect.signature(_ErrInfo).parameters)
    assert list(inspect.signature(RequestHandler.handle_error).parameters) == [
        "self",
        "request",
        "status",
        "exc",
        "message",
    ]
    assert list(inspect.signature(RequestHandler.finish_response).parameters) == [
        "self",
        "request",
        "resp",
        "start_time",
    ]
    assert inspect.iscoroutinefunction(web.AppRunner._make_server)


async def test_the_server_builds_our_handler_with_aiohttps_arguments() -> None:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    server = ApiServer(handler, stats=GuardStats(), keepalive_timeout=7.0, max_headers=50)
    assert server._kwargs == {"keepalive_timeout": 7.0, "max_headers": 50}
    protocol = server()
    assert type(protocol).__name__ == "ApiRequestHandler"
    assert protocol._keepalive_timeout == 7.0


@pytest.mark.parametrize(
    ("head", "dialect"),
    [
        (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n", "anthropic"),
        (b"POST /v1/messages/count_tokens HTTP/1.1\r\n", "anthropic"),
        (b"POST /v1/messages?beta=true HTTP/1.1\r\n", "anthropic"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nAnthropic-Version: 2023-06-01\r\n", "anthropic"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", "openai"),
        (b"POST /v1/messagesX HTTP/1.1\r\n", "openai"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nX-Note: /v1/messages\r\n", "openai"),
        (b"\x16\x03\x01\x00\xa5", "openai"),
    ],
)
def test_the_dialect_of_refused_bytes(head: bytes, dialect: str) -> None:
    assert ("anthropic" if _ANTHROPIC_BYTES.search(head) else "openai") == dialect


def test_the_dialect_of_a_parsed_request() -> None:
    assert dialect_of("/v1/messages", False) == "anthropic"
    assert dialect_of("/v1/models", True) == "anthropic"
    assert dialect_of("/v1/chat/completions", False) == "openai"


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_not_a_forward_proxy_is_a_400_that_closes(dialect: str) -> None:
    response = not_a_forward_proxy(dialect)
    assert response.status == 400
    assert response.keep_alive is False
    assert isinstance(response.body, bytes)
    doc = orjson.loads(response.body)
    assert doc["error"]["type"] == "invalid_request_error"
    assert (doc.get("type") == "error") is (dialect == "anthropic")
