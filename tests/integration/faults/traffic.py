"""Client traffic for the fault tests: real HTTP calls that remember what the proxy served."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson

from proxy.exchange import REQUEST_ID_HEADER


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    request_id: str
    status: int
    body: bytes
    seconds: float  # request sent -> last byte received
    ttfb_s: float


async def call(
    session: aiohttp.ClientSession,
    proxy_url: str,
    *,
    stream: bool = False,
    words: int = 5,
    delay_ms: int | None = None,
    prompt_bytes: int = 0,
) -> Served:
    """One chat completion through the proxy; the whole body is read, chunk by chunk."""
    text = " ".join(f"w{i}" for i in range(words)) + " " + "x" * prompt_bytes
    headers = {"Authorization": "Bearer sk-test-client", "Content-Type": "application/json"}
    if delay_ms is not None:
        headers["x-fake-delay-ms"] = str(delay_ms)
    body = orjson.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "stream": stream}
    )
    started = time.monotonic()
    # aiohttp warns (an error under pytest) when a large body is sent as plain bytes.
    payload = io.BytesIO(body) if len(body) > 512 * 1024 else body
    async with session.post(
        f"{proxy_url}/v1/chat/completions", data=payload, headers=headers
    ) as response:
        received = bytearray()
        ttfb = None
        async for data in response.content.iter_any():
            ttfb = ttfb if ttfb is not None else time.monotonic() - started
            received += data
        return Served(
            request_id=response.headers[REQUEST_ID_HEADER],
            status=response.status,
            body=bytes(received),
            seconds=time.monotonic() - started,
            ttfb_s=ttfb if ttfb is not None else time.monotonic() - started,
        )


async def burst(proxy_url: str, count: int, **kwargs: object) -> list[Served]:
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(call(session, proxy_url, **kwargs) for _ in range(count)))  # type: ignore[arg-type]


async def wait_http_ok(url: str, *, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers 200 (a service started in a subprocess)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer 200 within {timeout_s}s")
            await asyncio.sleep(0.1)


async def get_json(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, orjson.loads(await response.read())


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, what: str, timeout_s: float = 30.0
) -> None:
    """Deadline-bounded poll: wait until ``check()`` is true, or fail saying what never happened."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        await asyncio.sleep(0.02)


class SteadyTraffic:
    """Small bursts through the proxy, plain and streamed, round after round until ``stop``.

    ``rounds`` counts finished rounds, so a test can wait for traffic after a fault; ``run()``
    returns everything served.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = asyncio.Event()
        self.rounds = 0

    async def run(self) -> list[Served]:
        served: list[Served] = []
        while not self.stop.is_set():
            served += await burst(self.url, 3)
            served += await burst(self.url, 2, stream=True, words=6, delay_ms=20)
            self.rounds += 1
        return served

    async def more_rounds(self, count: int, *, what: str, timeout_s: float = 30.0) -> None:
        """Wait until ``count`` more rounds have been served."""
        target = self.rounds + count
        await eventually(lambda: self.rounds >= target, what=what, timeout_s=timeout_s)
