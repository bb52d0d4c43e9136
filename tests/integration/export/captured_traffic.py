"""Traffic for the legal and archive tests: exchanges from known client addresses and keys,
captured through the whole pipeline into a private database, with what each client sent and
received."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

import aiohttp
import orjson

from consumers.clickhouse.client import ClickHouse
from tests.integration.conftest import Pipeline, ProxyFactory

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class Sent:
    """One exchange as its client saw it."""

    request_id: str
    client_ip: str
    key: str
    body: bytes  # the request body bytes the client sent
    received: bytes  # the response body bytes the client received
    stream: bool


async def private_database(session_url: str) -> str:
    name = f"export_{uuid.uuid4().hex[:12]}"
    async with ClickHouse(session_url) as admin:
        await admin.command(f"CREATE DATABASE {name}")
    return f"{session_url}?database={name}"


async def send(pipeline: Pipeline, *, client_ip: str, key: str, stream: bool, text: str) -> Sent:
    body = orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        }
    )
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "X-Forwarded-For": client_ip,
    }
    if stream:
        headers["x-fake-delay-ms"] = "15"  # the fake upstream's events arrive as separate reads
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{pipeline.proxy_url}/v1/chat/completions", data=body, headers=headers) as r,
    ):
        received = await r.read()
        assert r.status == 200, received
        return Sent(r.headers["x-logorhythms-request-id"], client_ip, key, body, received, stream)


KEY_A = "sk-legal-key-a-0123456789abcdef"
KEY_B = "sk-legal-key-b-fedcba9876543210"


async def capture(pipeline_factory: ProxyFactory) -> tuple[Pipeline, dict[str, Sent]]:
    """Five exchanges (v4 and v6 clients, two keys, streamed and not), all loaded."""
    pipeline = await pipeline_factory(trusted_proxies=LOOPBACK)
    plan = {
        "a": ("203.0.113.7", KEY_A, False, "first \u00e9 \x00 question"),
        "b": ("203.0.113.99", KEY_B, True, "second question, streamed"),
        "c": ("2001:db8::5", KEY_A, True, "third, from IPv6"),
        "d": ("198.51.100.1", KEY_B, False, "fourth, elsewhere"),
        "e": ("2001:db9::1", KEY_B, True, "fifth, another v6 network"),
    }
    sent = {
        name: await send(pipeline, client_ip=ip, key=key, stream=stream, text=text)
        for name, (ip, key, stream, text) in plan.items()
    }
    ids = [s.request_id for s in sent.values()]
    await pipeline.wait_for(
        "SELECT count() FROM exchanges FINAL WHERE request_id IN {ids:Array(String)}",
        {"ids": ids},
        lambda rows: rows[0][0] == len(ids),
    )
    return pipeline, sent
