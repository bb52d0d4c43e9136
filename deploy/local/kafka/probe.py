"""Is the broker serving? One Kafka Metadata request that must list a live broker.

A bare TCP connect is not enough: a paused (SIGSTOP) or wedged JVM still completes TCP
handshakes (the kernel fills the listen backlog), and a foreign process on the port would pass
too. A Metadata answer that lists at least one live broker means this node is registered with
its own controller and unfenced, so produce/consume/create-topic work from the first request.

The request is a tiny Metadata v4 exchange over a blocking socket, so the probe neither needs
nor disturbs an asyncio event loop: it works from sync fixtures, threads and, blocking briefly,
from async code.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import NamedTuple

__all__ = [
    "BrokerAddress",
    "decode_metadata_response",
    "encode_metadata_request",
    "probe_metadata",
]


class BrokerAddress(NamedTuple):
    """One entry of the ``brokers`` array of a Metadata response."""

    node_id: int
    host: str
    port: int


_METADATA_API_KEY = 3
# Kafka 4.0 dropped Metadata v0-v3 (KIP-896); v4 is the oldest version 4.x still accepts and
# is non-flexible (no tagged fields), which keeps this encoder tiny.
_METADATA_API_VERSION = 4
_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def encode_metadata_request(correlation_id: int, client_id: str = "logorhythms-probe") -> bytes:
    """A size-prefixed Metadata v4 request for no topics (just brokers and controller)."""
    client = client_id.encode("utf-8")
    header = struct.pack(
        ">hhih", _METADATA_API_KEY, _METADATA_API_VERSION, correlation_id, len(client)
    )
    # topics: empty array (not null = "all topics"); allow_auto_topic_creation: false
    body = struct.pack(">ib", 0, 0)
    payload = header + client + body
    return struct.pack(">i", len(payload)) + payload


def decode_metadata_response(payload: bytes, correlation_id: int) -> list[BrokerAddress]:
    """Brokers listed in a Metadata v4 response (``payload`` without its size prefix)."""
    try:
        got_id, _throttle_ms, count = struct.unpack_from(">iii", payload, 0)
        if got_id != correlation_id:
            raise ValueError(f"correlation id {got_id} != {correlation_id}")
        offset = 12
        brokers: list[BrokerAddress] = []
        for _ in range(count):
            node_id, host_len = struct.unpack_from(">ih", payload, offset)
            offset += 6
            host = payload[offset : offset + host_len].decode("utf-8")
            offset += host_len
            port, rack_len = struct.unpack_from(">ih", payload, offset)
            offset += 6 + max(rack_len, 0)
            if offset > len(payload):
                raise ValueError("truncated broker entry")
            brokers.append(BrokerAddress(node_id, host, port))
    except struct.error as exc:
        raise ValueError(f"malformed Metadata response: {exc}") from exc
    return brokers


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def probe_metadata(host: str, port: int, timeout_s: float = 2.0) -> list[BrokerAddress]:
    """Send one Metadata request; return the live brokers it lists.

    Raises ``OSError`` (not reachable / timed out / closed) or ``ValueError`` (bad reply).
    """
    correlation_id = int.from_bytes(os.urandom(3), "big")
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(encode_metadata_request(correlation_id))
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 0 < size <= _MAX_RESPONSE_BYTES:
            raise ValueError(f"implausible response size {size}")
        return decode_metadata_response(_recv_exact(sock, size), correlation_id)
