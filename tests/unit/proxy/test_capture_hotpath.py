"""The hot-path economies in proxy.capture change no output: cached fingerprints, pooled
randomness for request ids, precomputed body digests, one-pass body redaction."""

from __future__ import annotations

import hashlib
import os

from proxy import capture

KEY = b"unit-fingerprint-key"


def test_cached_fingerprint_equals_a_fresh_hmac_and_the_cache_stays_bounded() -> None:
    cached = capture.Fingerprinter(KEY)
    first = cached.fingerprint("sk-live-abcdef123456")
    assert cached.fingerprint("sk-live-abcdef123456") == first
    assert capture.Fingerprinter(KEY).fingerprint("sk-live-abcdef123456") == first
    for i in range(capture.FINGERPRINT_CACHE_MAX + 10):
        cached.fingerprint(f"sk-flood-{i}")
    assert len(cached._cache) <= capture.FINGERPRINT_CACHE_MAX
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
    fingerprinter = capture.Fingerprinter(KEY)
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
        "redactor": redactor,
    }
    inline = capture.request_event(**fields)
    redacted = redactor.body(body)
    precomputed = capture.request_event(
        **fields, redacted_body=redacted, body_sha256=hashlib.sha256(redacted).hexdigest()
    )
    assert precomputed == inline
    assert b"sk-inline-secret-1" not in inline["body"]
    assert b"sk-client-key-12345678" not in inline["body"]


def test_one_pass_redaction_still_finds_members_in_any_case_and_spacing() -> None:
    redactor = capture.Fingerprinter(KEY).redactor([], "", ())
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
