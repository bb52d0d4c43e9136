"""The readiness probe's Metadata v4 codec."""

from __future__ import annotations

import struct

import pytest

from deploy.local.kafka.probe import (
    BrokerAddress,
    decode_metadata_response,
    encode_metadata_request,
)


def test_metadata_request_encoding() -> None:
    frame = encode_metadata_request(42, client_id="probe")
    (size,) = struct.unpack_from(">i", frame)
    assert size == len(frame) - 4
    api_key, version, correlation, client_len = struct.unpack_from(">hhih", frame, 4)
    assert (api_key, version, correlation, client_len) == (3, 4, 42, 5)
    assert frame[14:19] == b"probe"
    assert frame[19:] == struct.pack(">ib", 0, 0)  # no topics, no auto-creation


def _metadata_response(correlation: int, brokers: list[tuple[int, str, int, str | None]]) -> bytes:
    out = struct.pack(">iii", correlation, 0, len(brokers))
    for node_id, host, port, rack in brokers:
        out += struct.pack(">ih", node_id, len(host)) + host.encode()
        out += struct.pack(">i", port)
        out += (
            struct.pack(">h", -1) if rack is None else struct.pack(">h", len(rack)) + rack.encode()
        )
    return out + struct.pack(">hi", -1, 1) + struct.pack(">i", 0)  # cluster id, controller, topics


def test_metadata_response_decoding() -> None:
    payload = _metadata_response(7, [(1, "127.0.0.1", 9092, None), (2, "h", 1, "rack-a")])
    assert decode_metadata_response(payload, 7) == [
        BrokerAddress(1, "127.0.0.1", 9092),
        BrokerAddress(2, "h", 1),
    ]
    assert decode_metadata_response(_metadata_response(8, []), 8) == []


def test_metadata_response_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="correlation"):
        decode_metadata_response(_metadata_response(7, []), 8)
    with pytest.raises(ValueError, match=r"malformed|truncated"):
        decode_metadata_response(_metadata_response(7, [(1, "host", 1, None)])[:20], 7)
