"""Peak memory of the proxy and the loader while 16 clients upload 30 MB requests at once.

Each request is captured whole in one event (docs/decisions/0017-whole-bodies-in-one-event.md);
this measures what that costs: the proxy's and the loader's peak resident memory (VmHWM), and
that every exchange landed whole. A probe in a process of its own asks the proxy's ``/healthz``
every 20 ms meanwhile: its slowest answer is the longest the proxy's event loop was held up,
which is what another client waits on top of its own exchange.
Run: .venv/bin/python -m tests.bench.proxy.bench_large_uploads [--clients 16] [--megabytes 30]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from deploy.local.fake_upstream import create_fake_upstream
from deploy.local.kafka import KafkaBroker, create_topic, ensure_kafka_jars, free_ports
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES

TOPIC = "bench.large"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def body_of(megabytes: int) -> bytes:
    image = base64.b64encode(os.urandom(megabytes * 1_000_000 * 3 // 4)).decode()
    return (
        b'{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"hi"},'
        b'{"type":"image_url","image_url":{"url":"data:image/png;base64,'
        + image.encode()
        + b'"}}]}]}'
    )


async def wait_http(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(url)
            await asyncio.sleep(0.2)


async def probe(url: str) -> None:
    """Ask ``url`` every 20 ms until SIGTERM; then print the slowest answer in milliseconds."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    slowest = 0.0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with session.get(url) as response:
                    await response.read()
            except aiohttp.ClientError:
                pass
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.02)
    print(f"{slowest * 1000:.0f}", flush=True)


async def count_loaded(sql_url: str, ids: list[str]) -> int:
    quoted = ",".join(f"'{i}'" for i in ids)
    query = (
        "SELECT count() FROM exchanges FINAL WHERE NOT request_body_truncated "  # noqa: S608
        f"AND request_json_valid AND request_id IN ({quoted})"
    )
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(sql_url, data=query) as response:
                return int((await response.text()).strip() or 0) if response.status == 200 else 0
        except aiohttp.ClientError:
            return 0


async def run(workdir: Path, bootstrap: str, clients: int, megabytes: int) -> None:
    await create_topic(
        bootstrap, TOPIC, partitions=3, configs={"max.message.bytes": str(KAFKA_MAX_MESSAGE_BYTES)}
    )
    upstream = web.AppRunner(create_fake_upstream(), access_log=None)
    await upstream.setup()
    site = web.TCPSite(upstream, "127.0.0.1", 0)
    await site.start()
    upstream_url = f"http://127.0.0.1:{upstream.addresses[0][1]}"
    proxy_port, sql_port = free_ports(2)
    common = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "LOGORHYTHMS_TOPIC": TOPIC}
    proxy = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "deploy.cli", "proxy"],
        env={
            **common,
            "LOGORHYTHMS_PORT": str(proxy_port),
            "OPENAI_BASE_URL": f"{upstream_url}/v1",
            "OPENAI_API_KEY": "sk-bench-service",
            "LOGORHYTHMS_JOURNAL_DIR": str(workdir / "journal"),
            "LOGORHYTHMS_MAX_IN_FLIGHT_PER_CLIENT": "0",
        },
    )
    loader = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "deploy.cli", "load-clickhouse"],
        env={
            **common,
            "CLICKHOUSE_URL": f"chdb://{workdir / 'clickhouse'}",
            "LOGORHYTHMS_SQL_PORT": str(sql_port),
        },
    )
    proxy_url, sql_url = f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{sql_port}"
    prober: asyncio.subprocess.Process | None = None
    try:
        await wait_http(f"{proxy_url}/readyz", 60)
        await wait_http(f"{sql_url}/healthz", 120)
        bodies = [body_of(megabytes) for _ in range(clients)]
        idle_proxy, idle_loader = rss_mb(proxy.pid), rss_mb(loader.pid)
        prober = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bench.proxy.bench_large_uploads",
            "--probe", f"{proxy_url}/healthz",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(body: bytes) -> str:
                async with session.post(
                    f"{proxy_url}/v1/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    answer = await response.read()
                    assert response.status == 200, (response.status, answer[:300])
                    return response.headers["x-logorhythms-request-id"]

            ids = await asyncio.gather(*(one(b) for b in bodies))
        served_s = time.monotonic() - started
        prober.terminate()
        stall_ms = (await prober.communicate())[0].decode().strip()
        prober = None
        deadline = time.monotonic() + 300
        while (loaded := await count_loaded(sql_url, ids)) < clients:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{loaded} of {clients} exchanges loaded whole")
            await asyncio.sleep(0.5)
        loaded_s = time.monotonic() - started
        size_mb = len(bodies[0]) / 1e6
        print(f"{clients} concurrent uploads of {size_mb:.1f} MB each")
        print(f"  served in {served_s:.1f} s, all {clients} loaded whole in {loaded_s:.1f} s")
        print(f"  proxy  RSS idle {idle_proxy:.0f} MB, peak {peak_rss_mb(proxy.pid):.0f} MB")
        print(f"  proxy  slowest /healthz while serving: {stall_ms} ms")
        print(f"  loader RSS idle {idle_loader:.0f} MB, peak {peak_rss_mb(loader.pid):.0f} MB")
    finally:
        if prober is not None:  # a client failed: the probe has nothing left to report
            prober.terminate()
            await prober.wait()
        for process in (proxy, loader):
            process.terminate()
            await asyncio.to_thread(process.wait, 60)
        await upstream.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--megabytes", type=int, default=30)
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # the probe process's own mode
    args = parser.parse_args()
    if args.probe:
        asyncio.run(probe(args.probe))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with KafkaBroker(workdir / "kafka", libs_dir=ensure_kafka_jars()) as broker:
            asyncio.run(run(workdir, broker.bootstrap_servers, args.clients, args.megabytes))


if __name__ == "__main__":
    main()
