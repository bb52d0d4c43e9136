"""S2: no request data can steer the proxy to another host, nor make it follow a redirect.

A canary listener on a second loopback port stands for every internal service (169.254.169.254
cannot be bound on a test machine; the same code path decides for any address). Every attempt must
end at the configured upstream or at a 4xx, and the canary must never see a connection.
"""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from tests.integration.conftest import SERVICE_KEY, Pipeline
from tests.integration.security.scan import Canary, raw_exchange, status_of

LOOPBACK_FORMS = (
    "127.0.0.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.1",
    "[::ffff:127.0.0.1]",
    "[::1]",
    "[fe80::1]",
    "localhost",
    "metadata.google.internal",
)
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_no_request_field_steers_the_upstream(pipeline: Pipeline) -> None:
    proxy = f"{pipeline.proxy_url}/v1/chat/completions"
    async with Canary() as canary, aiohttp.ClientSession() as http:
        statuses = []
        for form in LOOPBACK_FORMS:
            target = f"{form}:{canary.port}"
            body = {
                **BODY,
                "api_base": f"http://{target}/v1",
                "base_url": f"http://{target}/v1",
                "url": f"http://{target}/",
            }
            headers = {
                "Host": target,
                "X-Forwarded-Host": target,
                "Forwarded": f"host={target}",
                "X-Original-URL": f"http://{target}/",
                "Authorization": "Bearer sk-client",
            }
            async with http.post(
                f"{proxy}?api_base=http://{target}", json=body, headers=headers
            ) as response:
                statuses.append(response.status)
            # Absolute-form request target, naming the canary as the host.
            raw = await raw_exchange(
                pipeline.proxy_url,
                f"POST http://{target}/v1/chat/completions HTTP/1.1\r\nHost: {target}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(orjson.dumps(BODY))}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + orjson.dumps(BODY),
            )
            statuses.append(status_of(raw))
    assert canary.connections == 0
    assert set(statuses) <= {200, 400}, statuses
    assert statuses.count(200) >= len(LOOPBACK_FORMS)  # header/body fields: served as usual
    # Everything that did go out went to the configured upstream, to its one path, with its key.
    assert len(pipeline.upstream.received) == statuses.count(200)
    for received in pipeline.upstream.received:
        assert received.path == "/v1/chat/completions"
        assert dict(received.headers)["Authorization"] == f"Bearer {SERVICE_KEY}"
        for name, _ in received.headers:
            assert name.lower() not in {"x-forwarded-host", "forwarded", "x-forwarded-for"}


@pytest.mark.parametrize(
    "target",
    [
        "/v1/../admin",
        "/v1/chat/completions/../../../admin",
        "/v1/chat/%2e%2e/%2e%2e/admin",
        "//127.0.0.1:1/v1/chat/completions",
        "/v1/chat/completions/..%2f..%2fadmin",
        "/v1/chat/completions%2f..",
    ],
)
async def test_path_tricks_reach_nothing_but_the_served_routes(
    pipeline: Pipeline, target: str
) -> None:
    raw = await raw_exchange(
        pipeline.proxy_url,
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        f"Connection: close\r\n\r\n{{}}".encode(),
    )
    assert status_of(raw) in {400, 404}
    assert pipeline.upstream.received == []


async def test_upstream_redirect_is_never_followed(pipeline: Pipeline) -> None:
    async with Canary() as canary, aiohttp.ClientSession() as http:
        location = f"http://127.0.0.1:{canary.port}/latest/meta-data/"
        async with http.post(
            f"{pipeline.proxy_url}/v1/chat/completions",
            json=BODY,
            headers={"x-fake-redirect": location},
            allow_redirects=False,
        ) as response:
            # Passed through as the upstream sent it; the client decides, the proxy never follows.
            assert response.status == 302
            assert response.headers["Location"] == location
            request_id = response.headers["x-logorhythms-request-id"]
        row = await pipeline.exchange(request_id, "status, outcome, upstream_url")
    assert canary.connections == 0
    assert len(pipeline.upstream.received) == 1
    assert row["status"] == 302
    assert row["upstream_url"] == f"{pipeline.upstream.url}/v1/chat/completions"
