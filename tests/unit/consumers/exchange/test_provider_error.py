"""The provider's own error (type, code, message) read from its JSON error body or error event,
in the shapes OpenAI (chat, completions, Responses) and Anthropic send."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from consumers.exchange.assemble import ChunkIn, assemble, final_outcome
from consumers.exchange.provider_error import ProviderError

OPENAI_404 = {"error": {
    "message": "The model `gpt-9` does not exist", "type": "invalid_request_error",
    "param": None, "code": "model_not_found"}}  # fmt: skip
ANTHROPIC_529 = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def body(doc: object) -> list[ChunkIn]:
    return [ChunkIn(1, 1000, orjson.dumps(doc))]


def event(doc: object, name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(doc) + b"\n\n"


@pytest.mark.parametrize("stream", [False, True])  # an error answer to a stream is JSON, too
def test_openai_error_body(stream: bool) -> None:
    out = assemble(body(OPENAI_404), endpoint="/v1/chat/completions", dialect="openai",
                   stream=stream)  # fmt: skip
    assert out.provider_error == ProviderError(
        type="invalid_request_error", code="model_not_found",
        message="The model `gpt-9` does not exist",
    )  # fmt: skip
    assert out.choices == []


def test_anthropic_error_body() -> None:
    out = assemble(body(ANTHROPIC_529), endpoint="/v1/messages", dialect="anthropic", stream=False)
    assert out.provider_error == ProviderError(type="overloaded_error", message="Overloaded")


@pytest.mark.parametrize(
    ("code", "expected"), [(None, ""), (429, "429"), ("rate_limit_exceeded", "rate_limit_exceeded")]
)
def test_codes_of_any_json_type_are_text(code: object, expected: str) -> None:
    doc = {"error": {"message": "m", "type": "t", "code": code}}
    out = assemble(body(doc), endpoint="/v1/embeddings", dialect="openai", stream=False)
    assert out.provider_error is not None
    assert out.provider_error.code == expected


def test_a_body_without_an_error_has_none() -> None:
    doc = {"id": "c", "choices": [{"index": 0, "message": {"content": "hi"}}], "error": None}
    out = assemble(body(doc), endpoint="/v1/chat/completions", dialect="openai", stream=False)
    assert out.provider_error is None
    assert out.text == "hi"


@pytest.mark.parametrize(
    ("data", "endpoint", "dialect", "expected"),
    [
        (
            event({"choices": [{"index": 0, "delta": {"content": "a"}}]}) + event(OPENAI_404),
            "/v1/chat/completions",
            "openai",
            ProviderError(
                type="invalid_request_error",
                code="model_not_found",
                message="The model `gpt-9` does not exist",
            ),
        ),
        (
            event({"type": "message_start", "message": {"id": "m", "content": []}}, "message_start")
            + event(ANTHROPIC_529, "error"),
            "/v1/messages",
            "anthropic",
            ProviderError(type="overloaded_error", message="Overloaded"),
        ),
        (
            event(
                {"type": "error", "code": "server_error", "message": "boom", "param": None}, "error"
            ),
            "/v1/responses",
            "openai",
            ProviderError(code="server_error", message="boom"),
        ),
    ],
    ids=["openai-chat", "anthropic", "responses"],
)
def test_error_events_in_a_stream(
    data: bytes, endpoint: str, dialect: str, expected: ProviderError
) -> None:
    out = assemble([ChunkIn(1, 1000, data)], endpoint=endpoint, dialect=dialect, stream=True)
    assert out.provider_error == expected
    assert out.error_in_stream == expected.message


def test_a_failed_response_carries_its_error() -> None:
    failed: dict[str, Any] = {"type": "response.failed", "response": {
        "id": "resp_1", "model": "gpt-4o", "status": "failed",
        "error": {"code": "rate_limit_exceeded", "message": "slow down"}}}  # fmt: skip
    out = assemble([ChunkIn(1, 1000, event(failed, "response.failed"))],
                   endpoint="/v1/responses", dialect="openai", stream=True)  # fmt: skip
    assert out.provider_error == ProviderError(code="rate_limit_exceeded", message="slow down")
    assert out.finish_reason == "failed"
    assert final_outcome("ok", None, None, out) == (
        "upstream_error_in_stream", "stream_error", "slow down"
    )  # fmt: skip


def test_an_http_error_names_the_providers_message_not_the_reason_phrase() -> None:
    out = assemble(body(OPENAI_404), endpoint="/v1/chat/completions", dialect="openai",
                   stream=False)  # fmt: skip
    assert final_outcome("upstream_http_error", "http_404", "Not Found", out) == (
        "upstream_http_error", "http_404", "The model `gpt-9` does not exist"
    )  # fmt: skip


def test_an_http_error_without_a_json_body_keeps_the_reason_phrase() -> None:
    out = assemble([ChunkIn(1, 1000, b"<html>Bad Gateway</html>")],
                   endpoint="/v1/chat/completions", dialect="openai", stream=False)  # fmt: skip
    assert out.provider_error is None
    assert final_outcome("upstream_http_error", "http_502", "Bad Gateway", out) == (
        "upstream_http_error", "http_502", "Bad Gateway"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "endpoint", "dialect"),
    [(OPENAI_404, "/v1/chat/completions", "openai"), (ANTHROPIC_529, "/v1/messages", "anthropic")],
)
@pytest.mark.parametrize("stream", [False, True])
def test_an_error_body_has_no_first_token(
    doc: dict[str, Any], endpoint: str, dialect: str, stream: bool
) -> None:
    # ttft_ms is the time to the first generated token; a 429's body is not one, and counting
    # it would pull the TTFT percentiles down by every fast refusal.
    out = assemble(body(doc), endpoint=endpoint, dialect=dialect, stream=stream)
    assert out.first_token_offset_ns is None
    answer = {"id": "c", "choices": [{"index": 0, "message": {"content": "hi"}}]}
    out = assemble(body(answer), endpoint="/v1/chat/completions", dialect="openai", stream=False)
    assert out.first_token_offset_ns == 1000
