from __future__ import annotations

import ipaddress
import re
import time
import uuid

from proxy import capture
from proxy.forwarded import resolve_client_ip

KEY = b"k" * 32


def test_request_ids_are_uuid7_and_time_ordered() -> None:
    ids = [capture.new_request_id() for _ in range(50)]
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
    stamp_ms = int(ids[0].replace("-", "")[:12], 16)
    assert abs(stamp_ms - time.time() * 1000) < 5000
    assert len(set(ids)) == 50


def test_fingerprint_is_keyed_and_stable() -> None:
    a = capture.Fingerprinter(KEY)
    b = capture.Fingerprinter(b"other-key")
    assert a.fingerprint("sk-1") == a.fingerprint("sk-1")
    assert a.fingerprint("sk-1") != b.fingerprint("sk-1")
    assert a.fingerprint("sk-1") != a.fingerprint("sk-2")
    assert re.fullmatch(r"fp:[0-9a-f]{24}", a.fingerprint("sk-1"))


def test_credential_headers_are_fingerprinted_and_others_kept() -> None:
    fp = capture.Fingerprinter(KEY)
    headers, client_key = fp.headers(
        [
            ("Authorization", "Bearer sk-secret-1"),
            ("x-api-key", "sk-ant-secret"),
            ("Cookie", "session=abc"),
            ("User-Agent", "curl/8"),
            ("X-Forwarded-For", "1.2.3.4"),
        ]
    )
    flat = repr(headers)
    for secret in ("sk-secret-1", "sk-ant-secret", "session=abc"):
        assert secret not in flat
    assert headers[0] == {
        "name": "authorization",
        "value": f"Bearer {fp.fingerprint('sk-secret-1')}",
    }
    assert client_key == fp.fingerprint("sk-secret-1")
    assert {"name": "user-agent", "value": "curl/8"} in headers
    assert {"name": "x-forwarded-for", "value": "1.2.3.4"} in headers


def test_credential_query_parameters_are_fingerprinted() -> None:
    fp = capture.Fingerprinter(KEY)
    assert fp.query("") == ""
    assert fp.query("a=1&b=2") == "a=1&b=2"
    stored = fp.query("key=AIzaSECRET&alt=sse")
    assert "AIzaSECRET" not in stored
    assert "alt=sse" in stored


def test_peek_json() -> None:
    assert capture.peek_json(b'{"model":"m","stream":true}') == ("m", True)
    assert capture.peek_json(b'{"model":1}') == (None, False)
    assert capture.peek_json(b"\xc0\xaf not json") == (None, False)
    assert capture.peek_json(b"[1]") == (None, False)


def test_request_event_caps_body_but_keeps_size_and_hash() -> None:
    body = b"x" * 100
    event = capture.request_event(
        request_id="r", received_at_us=1, method="POST", path="/v1/chat/completions", query="",
        headers=[{"name": "user-agent", "value": "ua"}], peer_ip="127.0.0.1",
        forwarded_for="f" * 5000,
        client_ip="127.0.0.1", client_key_fingerprint=None, body=body, max_body_in_event=10,
        model_requested=None, stream=False, endpoint="/v1/chat/completions", dialect="openai",
        provider="openai", upstream_url="u", model_sent=None, proxy_instance="p",
    )  # fmt: skip
    assert event["body"] == b"x" * 10
    assert event["body_truncated"] is True
    assert event["body_size"] == 100
    assert len(event["forwarded_for"]) == capture.MAX_FORWARDED_FOR_CHARS
    assert event["user_agent"] == "ua"


def test_client_ip_ignores_forwarded_for_from_untrusted_peers() -> None:
    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    assert resolve_client_ip("203.0.113.9", "1.1.1.1", trusted) == "203.0.113.9"
    assert resolve_client_ip("10.0.0.5", "6.6.6.6, 198.51.100.7", trusted) == "198.51.100.7"
    assert resolve_client_ip("10.0.0.5", "198.51.100.7, 10.0.0.9", trusted) == "198.51.100.7"
    assert resolve_client_ip("10.0.0.5", "1.1.1.1", []) == "10.0.0.5"
