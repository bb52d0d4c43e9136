"""Client address: X-Forwarded-For is kept always, believed only from configured trusted proxies."""

from __future__ import annotations

import ipaddress

import httpx2 as httpx
import pytest

from tests.integration.api.conftest import REQUEST_ID
from tests.integration.conftest import ProxyFactory

CHAIN = "203.0.113.7, 10.1.2.3"


@pytest.mark.parametrize(
    ("trusted", "client_ip"),
    [
        (("10.0.0.0/8",), "127.0.0.1"),  # the peer is no trusted proxy: its header is not believed
        (("127.0.0.1", "10.0.0.0/8"), "203.0.113.7"),  # right-most untrusted hop
    ],
)
async def test_forwarded_for_is_recorded_and_believed_only_from_trusted_peers(
    api_factory: ProxyFactory, trusted: tuple[str, ...], client_ip: str
) -> None:
    pipeline = await api_factory(trusted_proxies=tuple(ipaddress.ip_network(n) for n in trusted))
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{pipeline.proxy_url}/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": "hi"},
            headers={"X-Forwarded-For": CHAIN},
        )
    assert response.status_code == 200
    row = await pipeline.exchange(response.headers[REQUEST_ID], "peer_ip, forwarded_for, client_ip")
    assert row == {"peer_ip": "127.0.0.1", "forwarded_for": CHAIN, "client_ip": client_ip}
    # The chain is never passed upstream, where it could be taken for our own word.
    assert "X-Forwarded-For" not in dict(pipeline.upstream.received[-1].headers)
