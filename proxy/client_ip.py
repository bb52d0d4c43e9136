"""Which address is the client: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def resolve_client_ip(peer_ip: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The right-most address in peer + X-Forwarded-For that is not a trusted proxy.

    Walking from the peer leftwards and stopping at the first untrusted hop means a client can
    prepend whatever it likes to X-Forwarded-For without being believed.
    """
    if not trusted or not forwarded_for or not _is_trusted(peer_ip, trusted):
        return peer_ip
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer_ip if not hops else hop[:64]
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer_ip
