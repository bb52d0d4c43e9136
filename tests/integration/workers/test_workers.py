"""`logorhythms proxy --workers N` as a real process tree: N proxies on one port (SO_REUSEPORT)
under a supervisor, against the real Kafka broker; what reached Kafka is decoded and counted."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from deploy.local.kafka import create_topic, free_ports
from tests.integration.conftest import FakeUpstream
from tests.integration.faults.processes import ROOT, Service, start_proxy, wait_for_log
from tests.integration.faults.traffic import Served, call, eventually
from tests.integration.workers.captured import read_exchanges

pytestmark = pytest.mark.slow

_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


@pytest.fixture
async def topic(kafka_bootstrap: str, unique_topic: str) -> str:
    await create_topic(kafka_bootstrap, unique_topic, partitions=3)
    return unique_topic


async def _workers(
    upstream: FakeUpstream, bootstrap: str, topic: str, tmp_path: Path, name: str, **env: str
) -> Service:
    """The proxy with every worker listening."""
    service = await start_proxy(
        upstream_url=upstream.url,
        bootstrap=bootstrap,
        topic=topic,
        journal_dir=tmp_path / "journal",
        log_path=tmp_path / f"{name}.log",
        **env,
    )
    count = env.get("LOGORHYTHMS_WORKERS", "1")
    marker = f"all {count} workers are serving" if count != "1" else "proxy listening"
    await asyncio.to_thread(wait_for_log, service, marker)
    return service


def _pids(service: Service) -> dict[int, list[int]]:
    """Worker index -> the pids it has had, in start order."""
    pids: dict[int, list[int]] = {}
    for index, pid in _STARTED.findall(service.log()):
        pids.setdefault(int(index), []).append(int(pid))
    return pids


async def _calls(url: str, count: int, **kwargs: object) -> list[Served]:
    """``count`` concurrent calls, each on a fresh connection, so the kernel places each one."""
    connector = aiohttp.TCPConnector(force_close=True, limit=50)
    async with aiohttp.ClientSession(connector=connector) as session:
        return await asyncio.gather(*(call(session, url, **kwargs) for _ in range(count)))  # type: ignore[arg-type]


async def test_two_workers_serve_one_port_capture_once_and_drain_on_sigterm(
    fake_upstream: FakeUpstream, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    proxy = await _workers(
        fake_upstream, kafka_bootstrap, topic, tmp_path, "proxy", LOGORHYTHMS_WORKERS="2"
    )
    try:
        quick = await _calls(proxy.url, 120, words=3)
        streams = [
            asyncio.create_task(_calls(proxy.url, 1, stream=True, words=30, delay_ms=100))
            for _ in range(20)
        ]
        await eventually(
            lambda: len(fake_upstream.received) >= 140, what="every stream reached the upstream"
        )
        in_flight_at_sigterm = sum(not s.done() for s in streams)
        proxy.signal(signal.SIGTERM)
        streamed = [served for batch in await asyncio.gather(*streams) for served in batch]
        code = await asyncio.to_thread(proxy.wait, 30)
    finally:
        proxy.stop()
    log = proxy.log()
    assert code == 0, log[-3000:]
    assert in_flight_at_sigterm == 20  # ~3 s streams, signalled as soon as all had started
    assert all(s.status == 200 for s in quick)
    assert all(s.status == 200 and s.body.endswith(b"data: [DONE]\n\n") for s in streamed)
    for index in (0, 1):  # both drained, journaled nothing, and said so
        assert f"[worker {index}] proxy.app proxy stopped after serving" in log, log[-3000:]

    served = [*quick, *streamed]
    exchanges = await read_exchanges(kafka_bootstrap, topic, [s.request_id for s in served])
    assert len(exchanges) == len(served)
    assert all(exchanges[s.request_id].exactly_once for s in served)
    workers = {pids[0] for pids in _pids(proxy).values()}
    assert len(workers) == 2
    # The kernel spread the connections: each worker served quick calls and drained streams.
    assert {exchanges[s.request_id].pid for s in quick} == workers
    assert {exchanges[s.request_id].pid for s in streamed} == workers


async def test_a_killed_worker_is_restarted_and_the_port_keeps_serving(
    fake_upstream: FakeUpstream, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    proxy = await _workers(
        fake_upstream, kafka_bootstrap, topic, tmp_path, "proxy", LOGORHYTHMS_WORKERS="2"
    )
    try:
        victim = _pids(proxy)[1][0]
        os.kill(victim, signal.SIGKILL)
        await asyncio.to_thread(
            wait_for_log, proxy, f"worker 1 (pid {victim}) was killed by SIGKILL unexpectedly"
        )
        during = await _calls(proxy.url, 30, words=3)  # worker 0 alone, or both again
        await eventually(
            lambda: proxy.log().count("[worker 1] proxy.app proxy listening") == 2,
            what="worker 1 restarted and listening",
        )
        restarted = _pids(proxy)[1][1]
        after = await _calls(proxy.url, 60, words=3)
        proxy.signal(signal.SIGTERM)
        code = await asyncio.to_thread(proxy.wait, 30)
    finally:
        proxy.stop()
    log = proxy.log()
    assert code == 0, log[-3000:]
    assert "restarting it in 0.5s (restart 1 in a row)" in log
    served = [*during, *after]
    assert all(s.status == 200 for s in served)
    exchanges = await read_exchanges(kafka_bootstrap, topic, [s.request_id for s in served])
    assert all(exchanges[s.request_id].exactly_once for s in served)
    assert restarted in {exchanges[s.request_id].pid for s in after}  # the new worker serves


async def test_a_journal_of_worker_1_is_replayed_after_a_restart_with_one_worker(
    fake_upstream: FakeUpstream, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    # Two workers with Kafka unreachable: every event goes to the workers' journals.
    nowhere = f"127.0.0.1:{free_ports(1)[0]}"
    fast = {"LOGORHYTHMS_PUBLISH_SHUTDOWN_TIMEOUT_S": "1", "LOGORHYTHMS_KAFKA_TIMEOUT_S": "1"}
    first = await _workers(
        fake_upstream, nowhere, topic, tmp_path, "first", LOGORHYTHMS_WORKERS="2", **fast
    )
    try:
        served = await _calls(first.url, 40, stream=True, words=3)
        first.signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 30) == 0, first.log()[-3000:]
    finally:
        first.stop()
    journal = tmp_path / "journal"
    assert all(s.status == 200 for s in served)
    assert list((journal / "worker-1").glob("*.seg")), "worker 1 journaled nothing"

    # One worker, Kafka back: it owns journal/ and adopts worker-0 and worker-1.
    second = await _workers(fake_upstream, kafka_bootstrap, topic, tmp_path, "second", **fast)
    try:
        exchanges = await read_exchanges(kafka_bootstrap, topic, [s.request_id for s in served])
        assert all(exchanges[s.request_id].exactly_once for s in served)
        assert len({exchanges[s.request_id].pid for s in served}) == 2  # both workers' journals
        await eventually(
            lambda: not list(journal.glob("worker-*/*.seg")), what="adopted journals emptied"
        )
    finally:
        second.signal(signal.SIGTERM)
        code = await asyncio.to_thread(second.wait, 30)
        second.stop()
    assert code == 0
    assert f"replaying the journal {journal / 'worker-1'}" in second.log()


async def test_a_taken_port_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "deploy.cli", "proxy", "--workers", "2", "--port", str(port)],
            cwd=ROOT,
            env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=30,
        )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 2, output
    assert f"port {port} on 127.0.0.1 is already in use" in output
    assert "worker 0 started" not in output
    print(f"refused in {time.monotonic() - started:.1f}s")
