"""S2: no request data can steer the proxy to another host, nor make it follow a redirect.

A canary listener on a second loopback port stands for every internal service (169.254.169.254
cannot be bound on a test machine; the same code path decides for any address). Every attempt must
end at the configured upstream or at a 4xx, and the canary must never see a connection.
"""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from proxy.settings import Provider, Secret
from tests.integration.conftest import SERVICE_KEY, Pipeline, ProxyFactory
from tests.integration.security.scan import (
    Canary,
    RawLineUpstream,
    raw_exchange,
    status_of,
)

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


# S8: request paths that an HTTP client or an upstream could decode or normalise into another
# path. Each must be refused (4xx in the API's shape, captured as rejected) or reach the upstream
# under the base path, as the one string that was checked and stored.
ESCAPES = (
    "/v1/%2e%2e/admin/keys",
    "/v1/%252e%252e/admin/keys",
    "/v1/%25252e%25252e/admin/keys",
    "/v1/%2E%2e/%2e%2E/etc/passwd",
    "/v1/.%2e/admin",
    "/v1/%2e/admin",
    "/v1/files/..;/admin",
    "/v1/files/..%3b/admin",
    "/v1/..%2fadmin",
    "/v1/..%252fadmin",
    "/v1/files%2f..%2f..%2fadmin",
    "/v1/files%5c..%5cadmin",
    "/v1/files%255c..%255cadmin",
    "/v1/%c0%ae%c0%ae/admin",
    "/v1/%c0%af..%c0%afadmin",
    "/v1/%e0%80%ae%e0%80%ae/admin",
    "/v1/files%3F/../../admin",
    "/v1/files%253Fx=1",
    "/v1/files%23/../../admin",
    "/v1/files%00/../admin",
    "/v1/files%0d%0aX-Injected:%201",
    "/v1/files%09x",
    "/v1//admin",
    "/v1/" + "a" * 3000,
)
# Served: the path the upstream sees is this one, under the base path, nothing else.
SERVED = (
    ("/v1/files?limit=2&after=x%20y", "/gateway/v1/files?limit=2&after=x%20y"),
    ("/v1/files/file-abc/content", "/gateway/v1/files/file-abc/content"),
    ("/v1/files/file%2Dabc", "/gateway/v1/files/file-abc"),
    ("/v1/models/ft:gpt-4o-mini:org:x", "/gateway/v1/models/ft:gpt-4o-mini:org:x"),
    ("/v1/files?key=sk-client-query-0123456789&a=1", "/gateway/v1/files?a=1"),
    ("/v1/files?%256Bey=client-query-secret-1&a=2", "/gateway/v1/files?a=2"),
)


async def _send(proxy_url: str, method: str, target: str) -> tuple[int, bytes]:
    raw = await raw_exchange(
        proxy_url,
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-client-0123456789"
        f"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode(),
    )
    return status_of(raw), raw


async def test_path_escapes_never_leave_the_base_path(pipeline_factory: ProxyFactory) -> None:
    async with RawLineUpstream() as upstream:
        pipeline = await pipeline_factory(
            providers=(
                Provider(
                    name="openai",
                    base_url=f"{upstream.origin}/gateway/v1",
                    api_key=Secret(SERVICE_KEY),
                ),
            )
        )
        refused: list[str] = []
        for target in ESCAPES:
            for method in ("POST", "GET"):
                status, raw = await _send(pipeline.proxy_url, method, target)
                assert status in {400, 404, 414, 431}, (target, raw[:300])
                head, _, body = raw.partition(b"\r\n\r\n")
                if status != 431:  # over-long request lines end at aiohttp's parser
                    assert body.startswith(b"{"), (target, raw[:400])
                    error = orjson.loads(body)["error"]
                    assert error["type"] in {"invalid_request_error"}, error
                    assert b"x-logorhythms-request-id" in head.lower() or status == 404
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"x-logorhythms-request-id:"):
                        refused.append(line.partition(b":")[2].strip().decode())
        assert upstream.lines == []  # nothing at all reached the upstream

        served: list[str] = []
        for target, expected in SERVED:
            status, raw = await _send(pipeline.proxy_url, "GET", target)
            assert status == 200, (target, raw[:300])
            assert upstream.lines[-1] == f"GET {expected} HTTP/1.1".encode()
            head = raw.partition(b"\r\n\r\n")[0]
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"x-logorhythms-request-id:"):
                    served.append(line.partition(b":")[2].strip().decode())
        # The service key went upstream, and only on lines under the base path.
        for line, head in zip(upstream.lines, upstream.heads, strict=True):
            assert line.split(b" ")[1].startswith(b"/gateway/v1/"), line
            assert f"Authorization: Bearer {SERVICE_KEY}".encode() in head
            assert b"sk-client" not in head

        # Stored upstream_url is exactly what was sent; refused paths are rejected rows.
        for request_id, (_, expected) in zip(served, SERVED, strict=True):
            row = await pipeline.exchange(request_id, "upstream_url, outcome")
            assert row == {"upstream_url": upstream.origin + expected, "outcome": "ok"}
        assert len(refused) >= len(ESCAPES)  # each of them answered by the forwarder
        for request_id in refused:
            row = await pipeline.exchange(request_id, "upstream_url, outcome, error_type")
            assert row["outcome"] == "rejected"
            assert row["error_type"].startswith(("path_", "absolute_form", "query_"))
            assert row["upstream_url"] == ""


async def test_absolute_form_target_is_refused_and_captured(pipeline: Pipeline) -> None:
    status, raw = await _send(pipeline.proxy_url, "GET", "http://127.0.0.1:1/v1/files")
    assert status == 400
    error = orjson.loads(raw.partition(b"\r\n\r\n")[2])["error"]
    assert error["type"] == "invalid_request_error"
    assert pipeline.upstream.received == []
