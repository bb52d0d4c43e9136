"""The loop-lag monitor in a real proxy: a callback that blocks the proxy's loop shows in
``/statsz`` with its length, and the same window reaches a real UDP socket as DogStatsD gauges.

The proxy (real Kafka, real HTTP on loopback) runs in the test's own event loop, so the test can
block that loop; no loader shares it, so the only long stall is the one the test makes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from deploy.local.kafka import create_topic
from proxy.app import create_app, make_runner
from proxy.settings import Provider, ProxySettings, Secret
from tests.integration.conftest import SERVICE_KEY, FakeUpstream, serve
from tests.integration.datadog.conftest import StatsdListener, poll

BLOCK_S = 0.25


async def _statsz(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/statsz") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


def _gauges(lines: list[str], name: str) -> list[tuple[float, str]]:
    """(value, tags) of every ``name`` gauge line seen."""
    found = []
    for line in lines:
        if line.startswith(f"{name}:") and "|g" in line:
            value = float(line.split(":", 1)[1].split("|", 1)[0])
            tags = line.split("|#", 1)[1] if "|#" in line else ""
            found.append((value, tags))
    return found


async def test_a_blocking_callback_shows_in_statsz_and_as_a_dogstatsd_gauge(
    kafka_bootstrap: str,
    unique_topic: str,
    fake_upstream: FakeUpstream,
    statsd: StatsdListener,
    tmp_path: Path,
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    settings = ProxySettings(
        providers=(
            Provider(
                name="openai",
                base_url=f"{fake_upstream.url}/v1",
                dialect="openai",
                api_key=Secret(SERVICE_KEY),
            ),
        ),
        kafka_bootstrap_servers=kafka_bootstrap,
        topic=unique_topic,
        journal_dir=str(tmp_path / "journal"),
        fingerprint_key=Secret("test-fingerprint-key"),
        dogstatsd_host="127.0.0.1",
        dogstatsd_port=statsd.port,
        metrics_interval_s=0.3,
        loop_probe_interval_ms=5,
    )
    runner, url = await serve(create_app(settings), make_runner)
    try:
        async with aiohttp.ClientSession() as session:
            # Exchanges until one went the produce cycle's way (until Kafka first answers, the
            # publisher journals, and the replay delivers those events).
            deadline = time.monotonic() + 30
            while True:
                async with session.post(
                    f"{url}/v1/chat/completions",
                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                ) as response:
                    assert response.status == 200
                before = await _statsz(session, url)
                if "produce_acknowledge" in before["loop"]["sections"]:
                    break
                assert time.monotonic() < deadline, f"no produce cycle ran: {before}"
                await asyncio.sleep(0.1)
            assert before["loop"]["probe_interval_ms"] == 5
            sections = before["loop"]["sections"]
            assert sections["produce_hand_over"]["count"] >= 1
            assert sections["kafka_produce_request"]["count"] >= 1

            statsd.drain()
            asyncio.get_running_loop().call_soon(time.sleep, BLOCK_S)  # the deliberate stall
            # Until the probe has run twice since: the late one, and one after the block.
            deadline = time.monotonic() + 10
            while (after := await _statsz(session, url))["loop"]["lag"]["count"] < before["loop"][
                "lag"
            ]["count"] + 2:
                assert time.monotonic() < deadline, f"the probe stopped: {after['loop']}"
                await asyncio.sleep(0.01)
    finally:
        await runner.cleanup()
    lag = after["loop"]["lag"]
    # The probe (every 5 ms) fell due within the 250 ms block: it ran at least 245 ms late, in
    # the bucket up to 500 ms; the upper bound only rules out nonsense on a busy machine.
    assert BLOCK_S * 1000 - 5 <= lag["max_ms"] < BLOCK_S * 1000 + 1000, lag
    grew = {
        name: count - before["loop"]["lag"]["buckets"][name]
        for name, count in lag["buckets"].items()
    }
    assert grew["le_500000us"] >= 1, grew

    # The metrics tick every 0.3 s: the window that held the block reports it on a real socket.
    def reported() -> list[tuple[float, str]] | None:
        found = _gauges(statsd.drain(), "logorhythms.proxy.loop.lag_max_ms")
        return found if any(value >= BLOCK_S * 1000 - 5 for value, _ in found) else None

    gauges = await poll("the stall as logorhythms.proxy.loop.lag_max_ms", reported, timeout_s=10)
    assert max(value for value, _ in gauges) < BLOCK_S * 1000 + 1000
    assert _gauges(statsd.lines, "logorhythms.proxy.loop.lag_p99_ms")
    section_tags = {
        tags for _, tags in _gauges(statsd.lines, "logorhythms.proxy.loop.section_max_ms")
    }
    assert any("section:" in tags for tags in section_tags), section_tags
