"""S3/S4/L6: who the client is (X-Forwarded-For trust), per-IP rate limits, duplicate
credentials and load shedding; rejected exchanges are captured without a body."""

from __future__ import annotations

import asyncio
import ipaddress

import aiohttp
import orjson

from tests.integration.conftest import Pipeline, ProxyFactory
from tests.integration.security.scan import raw_exchange, status_of

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


async def _post(
    http: aiohttp.ClientSession, pipeline: Pipeline, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with http.post(
        f"{pipeline.proxy_url}/v1/chat/completions", json=BODY, headers=headers or {}
    ) as response:
        return response.status, dict(response.headers), await response.read()


async def test_untrusted_forwarded_for_is_stored_but_never_believed(
    pipeline_factory: ProxyFactory,
) -> None:
    pipeline = await pipeline_factory(rate_limit_per_s=0.01, rate_limit_burst=2)
    async with aiohttp.ClientSession() as http:
        # Rotating X-Forwarded-For from an untrusted peer neither dodges the limit nor is believed.
        results = [
            await _post(http, pipeline, {"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(3)
        ]
        huge = await _post(http, pipeline, {"X-Forwarded-For": ", ".join(["10.9.9.9"] * 600)})
    assert [r[0] for r in results] == [200, 200, 429]
    assert huge[0] == 429
    first = await pipeline.exchange(
        results[0][1]["x-logorhythms-request-id"], "client_ip, peer_ip, forwarded_for"
    )
    assert first == {
        "client_ip": "127.0.0.1",
        "peer_ip": "127.0.0.1",
        "forwarded_for": "198.51.100.0",
    }
    stored = await pipeline.exchange(
        huge[1]["x-logorhythms-request-id"], "forwarded_for, client_ip"
    )
    assert len(stored["forwarded_for"]) == 1024  # bounded, untrusted text
    assert stored["client_ip"] == "127.0.0.1"


async def test_trusted_proxy_hops_are_walked_from_the_right(pipeline_factory: ProxyFactory) -> None:
    pipeline = await pipeline_factory(
        trusted_proxies=LOOPBACK, rate_limit_per_s=0.01, rate_limit_burst=1
    )
    async with aiohttp.ClientSession() as http:
        victim = await _post(http, pipeline, {"X-Forwarded-For": "203.0.113.7"})
        # The attacker prepends the victim's address: the right-most untrusted hop is still theirs.
        spoof = await _post(http, pipeline, {"X-Forwarded-For": "203.0.113.7, 192.0.2.66"})
        again = await _post(http, pipeline, {"X-Forwarded-For": "203.0.113.7, 192.0.2.66"})
        victim_again = await _post(http, pipeline, {"X-Forwarded-For": "203.0.113.7"})
    assert [victim[0], spoof[0], again[0], victim_again[0]] == [200, 200, 429, 429]
    row = await pipeline.exchange(spoof[1]["x-logorhythms-request-id"], "client_ip, forwarded_for")
    assert row == {"client_ip": "192.0.2.66", "forwarded_for": "203.0.113.7, 192.0.2.66"}


async def test_rate_limited_request_is_429_in_api_shape_and_captured_without_body(
    pipeline_factory: ProxyFactory,
) -> None:
    pipeline = await pipeline_factory(rate_limit_per_s=0.01, rate_limit_burst=1)
    async with aiohttp.ClientSession() as http:
        ok = await _post(http, pipeline)
        limited = await _post(http, pipeline)
    assert ok[0] == 200
    status, headers, body = limited
    assert status == 429
    assert int(headers["Retry-After"]) >= 1
    error = orjson.loads(body)["error"]
    assert error["type"] == "rate_limit_error"
    assert "retry after" in error["message"]
    assert len(pipeline.upstream.received) == 1  # the upstream was never charged for it
    row = await pipeline.exchange(
        headers["x-logorhythms-request-id"],
        "status, outcome, error_type, request_body, upstream_status, provider",
    )
    assert row == {
        "status": 429,
        "outcome": "rejected",
        "error_type": "rate_limited",
        "request_body": "",
        "upstream_status": 0,
        "provider": "",
    }


async def test_duplicate_credential_header_is_400_and_captured(pipeline: Pipeline) -> None:
    body = orjson.dumps(BODY)
    raw = await raw_exchange(
        pipeline.proxy_url,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer sk-one-aaaaaaaa\r\nauthorization: Bearer sk-two-bbbbbbbb\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body),
    )
    assert status_of(raw) == 400
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert b"authorization header appears more than once" in payload
    request_id = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-logorhythms-request-id:")
    )
    assert pipeline.upstream.received == []
    row = await pipeline.exchange(request_id, "outcome, error_type, status")
    assert row == {
        "outcome": "rejected",
        "error_type": "duplicate_credential_header",
        "status": 400,
    }


async def test_flood_beyond_the_in_flight_cap_gets_503_retry_after(
    pipeline_factory: ProxyFactory,
) -> None:
    pipeline = await pipeline_factory(max_in_flight=2)
    slow = {**BODY, "stream": True}
    async with aiohttp.ClientSession() as http:
        # Two slow streams occupy the cap; wait until both have started streaming.
        streams = [
            await http.post(
                f"{pipeline.proxy_url}/v1/chat/completions",
                json=slow,
                headers={"x-fake-delay-ms": "300", "x-fake-chunks": "5"},
            )
            for _ in range(2)
        ]
        try:
            assert [s.status for s in streams] == [200, 200]
            flood = await asyncio.gather(*(_post(http, pipeline) for _ in range(10)))
        finally:
            for s in streams:
                await s.read()
                s.release()
        after = await _post(http, pipeline)
        async with http.get(f"{pipeline.proxy_url}/statsz") as r:
            stats = await r.json()
    assert [f[0] for f in flood] == [503] * 10
    assert all(f[1]["Retry-After"] == "1" for f in flood)
    assert orjson.loads(flood[0][2])["error"]["type"] == "overloaded_error"
    assert after[0] == 200  # served again once the streams finished
    assert stats["rejected_overload"] == 10


async def _stream(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    """Start a slow stream (1.5 s) and return once its head has arrived: a slot held."""
    response = await http.post(
        f"{url}/v1/chat/completions",
        json={**BODY, "stream": True},
        headers={"x-fake-delay-ms": "300", "x-fake-chunks": "5"},
    )
    assert response.status == 200
    return response


async def test_one_address_at_its_cap_does_not_affect_another(
    pipeline_factory: ProxyFactory,
) -> None:
    pipeline = await pipeline_factory(max_in_flight_per_client=2)
    attacker = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=attacker) as other, aiohttp.ClientSession() as http:
        held = [await _stream(other, pipeline.proxy_url) for _ in range(2)]
        try:
            over = await _post(other, pipeline)
            anthropic = await other.post(
                f"{pipeline.proxy_url}/v1/messages",
                json={"model": "claude", "max_tokens": 5, "messages": BODY["messages"]},
                headers={"anthropic-version": "2023-06-01"},
            )
            anthropic_body = await anthropic.read()
            # Another address is not counted against the first one's cap (and has its own).
            mine = await asyncio.gather(*(_post(http, pipeline) for _ in range(2)))
        finally:
            for response in held:
                await response.read()
                response.release()
        after = await _post(other, pipeline)  # the streams ended: the slots are back
        async with http.get(f"{pipeline.proxy_url}/statsz") as r:
            stats = await r.json()
    status, headers, body = over
    assert status == 429
    assert headers["Retry-After"] == "1"
    error = orjson.loads(body)["error"]
    assert error["type"] == "rate_limit_error"
    assert "at most 2" in error["message"]
    assert anthropic.status == 429
    assert orjson.loads(anthropic_body)["type"] == "error"  # Anthropic's shape on its path
    assert [m[0] for m in mine] == [200, 200]
    assert after[0] == 200
    assert (stats["rejected_client_cap"], stats["rejected_overload"]) == (2, 0)
    # Shed, not captured (like the global cap): no request id, nothing upstream.
    assert "x-logorhythms-request-id" not in headers
    assert len(pipeline.upstream.received) == 2 + 2 + 1


async def test_the_per_client_cap_follows_trusted_forwarded_for(
    pipeline_factory: ProxyFactory,
) -> None:
    pipeline = await pipeline_factory(trusted_proxies=LOOPBACK, max_in_flight_per_client=1)
    async with aiohttp.ClientSession() as http:
        # Two clients behind the same (trusted) balancer: one at its cap, the other served.
        first = await http.post(
            f"{pipeline.proxy_url}/v1/chat/completions",
            json={**BODY, "stream": True},
            headers={
                "x-fake-delay-ms": "300",
                "x-fake-chunks": "5",
                "X-Forwarded-For": "203.0.113.1",
            },
        )
        try:
            assert first.status == 200
            same = await _post(http, pipeline, {"X-Forwarded-For": "203.0.113.1"})
            # A client prepending the victim's address is still itself (the right-most hop).
            spoof = await _post(http, pipeline, {"X-Forwarded-For": "203.0.113.1, 203.0.113.2"})
        finally:
            await first.read()
            first.release()
    assert same[0] == 429
    assert spoof[0] == 200
