"""L3/L4/S5: oversized and compressed bodies are refused before they are read whole; odd bodies
(invalid JSON, invalid UTF-8, control characters, SQL-ish text) pass through and are stored
byte-exact."""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from tests.integration.conftest import Pipeline, ProxyFactory

LIMIT = 64 * 1024
URL = "/v1/chat/completions"


@pytest.fixture
async def small(pipeline_factory: ProxyFactory) -> Pipeline:
    return await pipeline_factory(max_body_bytes=LIMIT)


async def _chunked(total: int) -> AsyncIterator[bytes]:
    piece = b" " * 16384
    for _ in range(total // len(piece)):
        yield piece


async def _assert_rejected_413(
    pipeline: Pipeline, response: aiohttp.ClientResponse, declared: int
) -> None:
    assert response.status == 413
    error = orjson.loads(await response.read())["error"]
    assert error["type"] == "request_too_large"
    row = await pipeline.exchange(
        response.headers["x-logorhythms-request-id"],
        "outcome, error_type, request_body, status, upstream_status, request_body_truncated, "
        "request_body_size",
    )
    assert row == {
        "outcome": "rejected",
        "error_type": "body_too_large",
        "request_body": "",  # never stored
        "status": 413,
        "upstream_status": 0,
        "request_body_truncated": True,
        "request_body_size": declared,  # as declared by Content-Length; 0 when chunked
    }


async def test_oversized_bodies_are_413_without_an_upstream_call(small: Pipeline) -> None:
    started = time.monotonic()
    bomb = gzip.compress(b'{"model": "m", "pad": "' + b" " * (32 * 1024 * 1024) + b'"}')
    assert len(bomb) < LIMIT  # small on the wire: only decoding shows its size
    async with aiohttp.ClientSession() as http:
        url = f"{small.proxy_url}{URL}"
        big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
        async with http.post(url, data=io.BytesIO(big)) as response:
            await _assert_rejected_413(small, response, len(big))
        async with http.post(url, data=_chunked(2 * 1024 * 1024)) as response:  # no length
            assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
            await _assert_rejected_413(small, response, 0)
        async with http.post(
            url,
            data=bomb,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        ) as response:
            await _assert_rejected_413(small, response, len(bomb))
    assert small.upstream.received == []
    # Decoding stopped at the limit: 32 MiB were never inflated in one piece.
    assert time.monotonic() - started < 30


async def test_compressed_body_under_the_limit_is_decoded_once(small: Pipeline) -> None:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "zipped"}]})
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{small.proxy_url}{URL}",
            data=gzip.compress(body),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 200
        request_id = response.headers["x-logorhythms-request-id"]
    # The upstream got the decoded body without a Content-Encoding that would claim otherwise.
    (received,) = small.upstream.received
    assert received.body == body
    assert "content-encoding" not in {k.lower() for k, _ in received.headers}
    row = await small.exchange(request_id, "request_body, request_json_valid")
    assert row == {"request_body": body.decode(), "request_json_valid": True}


ODD_BODIES = {
    "invalid_json": b'{"model": "m", "messages": [',
    "overlong_utf8": b'{"model": "m", "messages": [{"role": "user", "content": "\xc0\xaf"}]}',
    "lone_surrogate_escape": b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',  # noqa: E501
    "raw_nul": b'{"model": "m", "messages": [{"role": "user", "content": "a\x00b"}]}',
}


async def test_invalid_json_and_utf8_pass_through_stored_byte_exact(pipeline: Pipeline) -> None:
    ids = {}
    async with aiohttp.ClientSession() as http:
        for name, body in ODD_BODIES.items():
            async with http.post(
                f"{pipeline.proxy_url}{URL}",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                # The upstream judges (400 in its error shape, as providers do); the proxy stays
                # a pipe.
                assert response.status == 400, name
                assert (await response.json())["error"]["type"] == "invalid_request_error", name
                ids[name] = response.headers["x-logorhythms-request-id"]
    assert [r.body for r in pipeline.upstream.received] == list(ODD_BODIES.values())
    for name, body in ODD_BODIES.items():
        (stored,) = await pipeline.wait_for(
            "SELECT body FROM requests_raw FINAL WHERE request_id = {id:String}",
            {"id": ids[name]},
            lambda rows: len(rows) == 1,
            binary_columns=("body",),
        )
        assert stored[0] == body, name
        row = await pipeline.exchange(ids[name], "request_json_valid, request_utf8_valid, outcome")
        assert row["outcome"] == "upstream_http_error"
        assert row["request_json_valid"] is False, name
        assert row["request_utf8_valid"] is (name != "overlong_utf8"), name


async def test_hostile_prompt_text_is_stored_verbatim(pipeline: Pipeline) -> None:
    prompts = [
        "\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[2J",
        "line1\r\nX-Injected: yes\r\n\r\nline3",
        "nul\x00inside",
        "'); DROP TABLE exchanges; -- \\' \" {id:String} ${x} %s",
        "x" * (700 * 1024),  # one long line, under the event size cap (B9 covers larger)
    ]
    ids = []
    async with aiohttp.ClientSession() as http:
        for prompt in prompts:
            body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]})
            async with http.post(f"{pipeline.proxy_url}{URL}", data=body) as response:
                assert response.status == 200
                ids.append((response.headers["x-logorhythms-request-id"], body))
    for (request_id, body), prompt in zip(ids, prompts, strict=True):
        row = await pipeline.exchange(request_id, "request_body, messages, response_text")
        assert row["request_body"] == body.decode()
        assert row["messages"] == [{"role": "user", "content": prompt}]
        assert row["response_text"].startswith("Echo:")
