"""proxy.capture: request ids, fingerprints, redaction and the events, built without I/O."""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid

from proxy import capture, redaction

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
    a = redaction.Fingerprinter(KEY)
    b = redaction.Fingerprinter(b"other-key")
    assert a.fingerprint("sk-1") == a.fingerprint("sk-1")
    assert a.fingerprint("sk-1") != b.fingerprint("sk-1")
    assert a.fingerprint("sk-1") != a.fingerprint("sk-2")
    assert re.fullmatch(r"fp:[0-9a-f]{24}", a.fingerprint("sk-1"))


def test_credential_headers_are_fingerprinted_and_others_kept() -> None:
    fp = redaction.Fingerprinter(KEY)
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
    fp = redaction.Fingerprinter(KEY)
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
    event = capture.request_event(capture.CapturedRequest(
        request_id="r", received_at_us=1, method="POST", path="/v1/chat/completions", query="",
        headers=[{"name": "user-agent", "value": "ua"}], peer_ip="127.0.0.1",
        forwarded_for="f" * 5000,
        client_ip="127.0.0.1", client_key_fingerprint=None, body=body, max_body_in_event=10,
        model_requested=None, stream=False, endpoint="/v1/chat/completions", dialect="openai",
        provider="openai", upstream_url="u", model_sent=None, proxy_instance="p",
    ))  # fmt: skip
    assert event["body"] == b"x" * 10
    assert event["body_truncated"] is True
    assert event["body_size"] == 100
    assert len(event["forwarded_for"]) == capture.MAX_FORWARDED_FOR_CHARS
    assert event["user_agent"] == "ua"


# The economies of the hot path (cached fingerprints, pooled randomness for request ids,
# precomputed body digests, one-pass body redaction) change no output.


def test_cached_fingerprint_equals_a_fresh_hmac_and_the_cache_stays_bounded() -> None:
    cached = redaction.Fingerprinter(KEY)
    first = cached.fingerprint("sk-live-abcdef123456")
    assert cached.fingerprint("sk-live-abcdef123456") == first
    assert redaction.Fingerprinter(KEY).fingerprint("sk-live-abcdef123456") == first
    for i in range(redaction.FINGERPRINT_CACHE_MAX + 10):
        cached.fingerprint(f"sk-flood-{i}")
    assert len(cached._cache) <= redaction.FINGERPRINT_CACHE_MAX
    assert cached.fingerprint("sk-live-abcdef123456") == first


def test_request_ids_stay_unique_and_version_7_across_pool_refills() -> None:
    ids = [capture.new_request_id() for _ in range(5000)]  # > 12 refills of the 4 KiB pool
    assert len(set(ids)) == len(ids)
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)


def test_a_forked_child_does_not_repeat_its_parents_request_ids() -> None:
    capture.new_request_id()  # the pool is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, capture.new_request_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent_id = capture.new_request_id()
    assert len(child_id) == 36
    assert child_id[-20:] != parent_id[-20:]


def test_precomputed_redaction_and_digest_give_the_same_event() -> None:
    fingerprinter = redaction.Fingerprinter(KEY)
    headers = [("Authorization", "Bearer sk-client-key-12345678")]
    redactor = fingerprinter.redactor(headers, "", ())
    body = b'{"model":"m","api_key":"sk-inline-secret-1","messages":"sk-client-key-12345678"}'
    fields = {
        "request_id": "r",
        "received_at_us": 1,
        "method": "POST",
        "path": "/v1/chat/completions",
        "query": "",
        "headers": [],
        "peer_ip": "127.0.0.1",
        "forwarded_for": None,
        "client_ip": "127.0.0.1",
        "client_key_fingerprint": None,
        "body": body,
        "max_body_in_event": 1 << 20,
        "model_requested": "m",
        "stream": False,
        "endpoint": "/v1/chat/completions",
        "dialect": "openai",
        "provider": "openai",
        "upstream_url": "http://u/v1/chat/completions",
        "model_sent": "m",
        "proxy_instance": "test",
    }
    captured = capture.CapturedRequest(**fields)  # type: ignore[arg-type]
    inline = capture.request_event(captured, redactor=redactor)
    redacted = redactor.body(body)
    precomputed = capture.request_event(
        captured,
        redactor=redactor,
        redacted_body=redacted,
        body_sha256=hashlib.sha256(redacted).hexdigest(),
    )
    assert precomputed == inline
    assert b"sk-inline-secret-1" not in inline["body"]
    assert b"sk-client-key-12345678" not in inline["body"]


def test_one_pass_redaction_still_finds_members_in_any_case_and_spacing() -> None:
    redactor = redaction.Fingerprinter(KEY).redactor([], "", ())
    for body, secret in (
        (b'{"API_KEY": "sk-upper-secret"}', b"sk-upper-secret"),
        (b'{"x-Api-Key" :"sk-mixed-secret"}', b"sk-mixed-secret"),
        (b'{"Password":\n"hunter2hunter2"}', b"hunter2hunter2"),
    ):
        out = redactor.body(body)
        assert b'"fp:' in out, body
        assert secret not in out
    untouched = b'{"messages": "the key\\": \\"x\\" stays"}'
    assert redactor.body(untouched) == untouched
