"""L6: connections that trickle their request head are closed within the header timeout, while
ordinary requests keep being served."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import aiohttp
import orjson

from tests.integration.conftest import ProxyFactory

HEADER_TIMEOUT_S = 1.0
SLOW_CONNECTIONS = 50


async def _slowloris(host: str, port: int, stop: asyncio.Event) -> float:
    """Send a request head one byte every 0.2 s; return how long until the server hung up."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nX-Slow: " + b"a" * 1000
    try:
        for byte in head:
            if reader.at_eof() or stop.is_set():
                break
            writer.write(bytes([byte]))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    if await reader.read(1024) == b"":
                        break  # the server closed the connection
        return time.monotonic() - started
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_slow_headers_are_cut_and_others_served(pipeline_factory: ProxyFactory) -> None:
    pipeline = await pipeline_factory(header_timeout_s=HEADER_TIMEOUT_S)
    host, port = pipeline.proxy_url.removeprefix("http://").split(":")
    stop = asyncio.Event()
    slow = [asyncio.create_task(_slowloris(host, int(port), stop)) for _ in range(SLOW_CONNECTIONS)]
    latencies = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(10):
                started = time.monotonic()
                async with http.post(
                    f"{pipeline.proxy_url}/v1/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                ) as response:
                    assert response.status == 200
                    await response.read()
                latencies.append(time.monotonic() - started)
        held = await asyncio.wait_for(asyncio.gather(*slow), timeout=30)
    finally:
        stop.set()
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
    # Every slow connection was closed by the server, at the header timeout (not at the end of
    # the 1 000-byte trickle, which would take 200 s).
    assert max(held) < HEADER_TIMEOUT_S + 2.0, sorted(held)[-5:]
    # Our clock starts when open_connection returns, which on a loaded machine can be well after
    # the server accepted (and started its timer): so only "not closed at once" is asserted.
    assert min(held) >= HEADER_TIMEOUT_S * 0.5, sorted(held)[:5]
    # Legitimate requests were served throughout (generous bound: CI machines are busy).
    assert max(latencies) < HEADER_TIMEOUT_S + 2.0, latencies
    assert len(pipeline.upstream.received) == 10


BODY_TIMEOUT_S = 3.0
SLOW_UPLOADS = 24
PER_CLIENT_CAP = 8
ATTACKER_IP = "127.0.0.2"  # all of 127.0.0.0/8 is loopback on Linux


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split(" ", 2)[1]), headers, body


@dataclass(frozen=True)
class Upload:
    status: int
    headers: dict[str, str]
    answered_at: float  # time.monotonic() when the answer came
    answered_s: float  # ... seconds after the body byte was sent
    closed_s: float  # when the server had closed the connection (after the answer)


async def _slow_upload(host: str, port: int) -> Upload:
    """Send a request head and one byte of a 1 000-byte body, then nothing."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(ATTACKER_IP, 0))
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        await writer.drain()
        sent = time.monotonic()
        async with asyncio.timeout(BODY_TIMEOUT_S + 15):
            status, headers, _ = await _read_response(reader)
            answered_at = time.monotonic()
            if status == 408:
                # The slot is given back and so is the connection: no lingering for the rest.
                assert await reader.read() == b""
        return Upload(status, headers, answered_at, answered_at - sent, time.monotonic() - sent)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_slow_uploads_from_one_address_lock_nobody_out(
    pipeline_factory: ProxyFactory,
) -> None:
    # Without the per-client cap the slow uploads would take every global slot (24 > 16) and
    # everyone else would get 503; without the body deadline they would hold them for ever.
    pipeline = await pipeline_factory(
        body_first_byte_timeout_s=BODY_TIMEOUT_S,
        body_read_timeout_s=BODY_TIMEOUT_S,
        max_in_flight=16,
        max_in_flight_per_client=PER_CLIENT_CAP,
    )
    host, port = pipeline.proxy_url.removeprefix("http://").split(":")
    slow = [asyncio.create_task(_slow_upload(host, int(port))) for _ in range(SLOW_UPLOADS)]
    latencies = []
    try:
        async with aiohttp.ClientSession() as http:
            # Once the proxy has taken in every slow upload (admitted or refused)...
            deadline = time.monotonic() + 10
            while True:
                async with http.get(f"{pipeline.proxy_url}/statsz") as response:
                    seen = await response.json()
                handled = ("served", "rejected_client_cap", "rejected_overload")
                if sum(seen[k] for k in handled) >= SLOW_UPLOADS:
                    break
                assert time.monotonic() < deadline, seen
                await asyncio.sleep(0.05)
            # ...another address is served, while the admitted ones are held for 3 s.
            while len(latencies) < 10:
                started = time.monotonic()
                async with http.post(
                    f"{pipeline.proxy_url}/v1/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                ) as response:
                    assert response.status == 200, await response.text()
                    await response.read()
                latencies.append(time.monotonic() - started)
            served_by = time.monotonic()
            async with http.get(f"{pipeline.proxy_url}/statsz") as response:
                stats = await response.json()
        uploads = await asyncio.gather(*slow)
    finally:
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
    timed_out = [u for u in uploads if u.status == 408]
    refused = [u for u in uploads if u.status == 429]
    assert sorted(u.status for u in uploads) == [408] * len(timed_out) + [429] * len(refused)
    assert (len(timed_out), len(refused)) == (PER_CLIENT_CAP, SLOW_UPLOADS - PER_CLIENT_CAP)
    assert (stats["rejected_client_cap"], stats["rejected_overload"]) == (len(refused), 0)
    # The other address was served at once, while the slow uploads still held their slots.
    assert max(latencies) < BODY_TIMEOUT_S / 2, latencies
    assert served_by < min(u.answered_at for u in timed_out)
    # The admitted uploads were answered at the body deadline (not before, not much after), and
    # their connections closed right after.
    assert all(BODY_TIMEOUT_S * 0.8 <= u.answered_s < BODY_TIMEOUT_S + 2 for u in timed_out)
    assert all(u.closed_s < BODY_TIMEOUT_S + 2 for u in timed_out)
    assert all(u.headers["connection"] == "close" for u in timed_out)
    # Those over the address's cap were refused at once, with Retry-After.
    assert all(u.answered_s < BODY_TIMEOUT_S / 2 for u in refused)
    assert all(u.headers["retry-after"] == "1" for u in refused)
    # Each timed-out upload is a rejected exchange, with the reason, from the attacker's address.
    for upload in timed_out[:3]:
        row = await pipeline.exchange(
            upload.headers["x-logorhythms-request-id"],
            "status, outcome, error_type, peer_ip, request_body, upstream_status",
        )
        assert row == {
            "status": 408,
            "outcome": "rejected",
            "error_type": "body_timeout",
            "peer_ip": ATTACKER_IP,
            "request_body": "",
            "upstream_status": 0,
        }
    assert len(pipeline.upstream.received) == 10


async def test_the_body_deadline_is_per_read_not_a_total(pipeline_factory: ProxyFactory) -> None:
    """No first body byte within its deadline: 408. A body that keeps coming, slowly, is taken
    whole however long it takes in all."""
    pipeline = await pipeline_factory(body_first_byte_timeout_s=1.0, body_read_timeout_s=1.0)
    host, port = pipeline.proxy_url.removeprefix("http://").split(":")
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi " * 10}]})
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    silent_reader, silent = await asyncio.open_connection(host, int(port))
    trickle_reader, trickle = await asyncio.open_connection(host, int(port))
    try:
        silent.write(head)
        trickle.write(head)
        started = time.monotonic()
        pieces = [body[i : i + 8] for i in range(0, len(body), 8)]
        for piece in pieces:  # one piece every 0.25 s: about 2 s in all, twice the deadline
            trickle.write(piece)
            await trickle.drain()
            await asyncio.sleep(0.25)
        trickled_s = time.monotonic() - started
        async with asyncio.timeout(10):
            status, headers, answer = await _read_response(silent_reader)
            trickled = await _read_response(trickle_reader)
    finally:
        for writer in (silent, trickle):
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    assert trickled_s > 1.5  # longer than either deadline in total
    assert trickled[0] == 200
    assert status == 408
    assert "did not start within 1 s" in orjson.loads(answer)["error"]["message"]
    row = await pipeline.exchange(headers["x-logorhythms-request-id"], "outcome, error_type")
    assert row == {"outcome": "rejected", "error_type": "body_timeout"}
    (received,) = pipeline.upstream.received
    assert received.body == body  # the trickled body, whole
