"""CPU per streamed exchange through the proxy, capture on vs off (in-process, real Kafka).

Client, fake upstream and proxy share one process and one core, so the difference between the
two lines is the capture's whole cost (building, encoding, handing to aiokafka, its sender).
Run: .venv/bin/python -m tests.bench.proxy.bench_capture_end_to_end
"""

import asyncio
import pathlib
import tempfile
import time

import aiohttp
from aiohttp import web

from deploy.local.fake_upstream import create_fake_upstream
from deploy.local.kafka import KafkaBroker, create_topic
from proxy.app import create_app
from proxy.settings import Provider, ProxySettings, Secret


async def serve(app):
    r = web.AppRunner(app, access_log=None)
    await r.setup()
    s = web.TCPSite(r, "127.0.0.1", 0)
    await s.start()
    return r, f"http://127.0.0.1:{r.addresses[0][1]}"


async def main(bootstrap, capture):
    await create_topic(bootstrap, "cpu")
    up, upurl = await serve(create_fake_upstream())
    st = ProxySettings(
        providers=(Provider(name="openai", base_url=upurl + "/v1", api_key=Secret("sk-x")),),
        kafka_bootstrap_servers=bootstrap,
        topic="cpu",
        journal_dir=tempfile.mkdtemp(),
        capture=capture,
    )
    pr, purl = await serve(create_app(st))
    body = (
        b'{"model":"m","stream":true,"messages":[{"role":"user","content":"'
        + b"word " * 20
        + b'"}]}'
    )
    async with aiohttp.ClientSession() as s:
        await asyncio.sleep(2)
        t0 = time.process_time()
        w0 = time.perf_counter()

        async def one():
            async with s.post(
                purl + "/v1/chat/completions",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as r:
                await r.read()

        for _ in range(50):
            await asyncio.gather(*[one() for _ in range(8)])
        cpu = time.process_time() - t0
    await pr.cleanup()
    await up.cleanup()
    per_exchange_ms = cpu / 400 * 1e3
    wall_s = time.perf_counter() - w0
    print(
        f"capture={capture}: {per_exchange_ms:.2f} ms CPU per streamed exchange, wall {wall_s:.1f}s"
    )


if __name__ == "__main__":
    with KafkaBroker(pathlib.Path(tempfile.mkdtemp())) as k:
        asyncio.run(main(k.bootstrap_servers, True))
        asyncio.run(main(k.bootstrap_servers, False))
