"""Credentials inside captured bytes: fingerprinted, every other byte left as it was."""

from __future__ import annotations

import hashlib

import orjson

from proxy import capture, redaction

KEY = b"k" * 32
FP = redaction.Fingerprinter(KEY)
CLIENT = "sk-client-canary-0123456789"
SERVICE = "sk-service-canary-9876543210"


def _redactor(headers: list[tuple[str, str]] | None = None, query: str = "") -> redaction.Redactor:
    return FP.redactor(
        headers if headers is not None else [("Authorization", f"Bearer {CLIENT}")],
        query,
        [SERVICE],
    )


def test_body_without_credentials_is_returned_unchanged() -> None:
    body = b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"token key"}]}'
    assert _redactor().body(body) is body


def test_known_secrets_are_replaced_wherever_they_appear() -> None:
    body = f'{{"messages":[{{"role":"user","content":"my key is {CLIENT} and {SERVICE}"}}]}}'
    out = _redactor().body(body.encode())
    assert CLIENT.encode() not in out
    assert SERVICE.encode() not in out
    assert FP.fingerprint(CLIENT).encode() in out
    assert out.startswith(b'{"messages":[{"role":"user","content":"my key is fp:')
    assert orjson.loads(out)["messages"][0]["role"] == "user"


def test_credential_named_members_are_fingerprinted_byte_exact_elsewhere() -> None:
    body = (
        b'{"model": "m",  "api_key" : "unknown-secret-1",\n "apiKey":"unknown-secret-2",'
        b' "extra": {"headers": {"Authorization": "Bearer unknown-secret-3"}},'
        b' "password": "hunter2", "x-api-key": "", "content": "\xc0\xaf raw"}'
    )
    out = _redactor([]).body(body)
    for secret in (b"unknown-secret-1", b"unknown-secret-2", b"unknown-secret-3", b"hunter2"):
        assert secret not in out
    expected = (
        body.replace(b"unknown-secret-1", FP.fingerprint("unknown-secret-1").encode())
        .replace(b"unknown-secret-2", FP.fingerprint("unknown-secret-2").encode())
        .replace(b"unknown-secret-3", FP.fingerprint("unknown-secret-3").encode())
        .replace(b"hunter2", FP.fingerprint("hunter2").encode())
    )
    assert out == expected  # spacing, order, invalid UTF-8 and the empty value untouched


def test_json_inside_a_string_is_redacted_one_level_down() -> None:
    # Tool-call arguments are JSON in a JSON string; so is JSON pasted into a prompt. A key in
    # either is a credential too: the value is replaced, the outer JSON stays valid.
    body = b'{"content": "{\\"api_key\\": \\"example-value-1\\", \\"n\\": \\"kept\\"}"}'
    out = _redactor([]).body(body)
    assert b"example-value-1" not in out
    assert orjson.loads(orjson.loads(out)["content"]) == {
        "api_key": FP.fingerprint("example-value-1"),
        "n": "kept",
    }


def test_secrets_from_every_credential_header_cookie_and_query_are_known() -> None:
    redactor = _redactor(
        [
            ("x-api-key", "xak-canary-11111111"),
            ("api-key", "ak-canary-22222222"),
            ("Cookie", "session=cookie-canary-333333; theme=dark"),
            ("Proxy-Authorization", "Basic cHJveHktY2FuYXJ5"),
        ],
        "key=query-canary-44444444&x=1",
    )
    data = (
        b"xak-canary-11111111 ak-canary-22222222 cookie-canary-333333 cHJveHktY2FuYXJ5 "
        b"query-canary-44444444 dark"
    )
    out = redactor.known(data)
    assert b"canary" not in out
    assert b"cHJveHktY2FuYXJ5" not in out
    assert out.endswith(b" dark")  # a cookie value too short to be a secret is left alone


def test_short_values_are_not_searched_for() -> None:
    redactor = _redactor([("x-api-key", "abc")])
    assert redactor.known(b"abcabc") == b"abcabc"


def test_request_event_stores_redacted_body_with_original_size() -> None:
    body = f'{{"api_key": "{CLIENT}", "model": "m"}}'.encode()
    event = capture.request_event(capture.CapturedRequest(
        request_id="r", received_at_us=0, method="POST", path="/v1/chat/completions", query="",
        headers=[], peer_ip="127.0.0.1", forwarded_for=None, client_ip="127.0.0.1",
        client_key_fingerprint=None, body=body, max_body_in_event=1000, model_requested="m",
        stream=False, endpoint="/v1/chat/completions", dialect="openai", provider="openai",
        upstream_url="http://u/v1/chat/completions", model_sent="m", proxy_instance="t",
    ), redactor=_redactor())  # fmt: skip
    assert CLIENT.encode() not in event["body"]
    assert event["body_size"] == len(body)
    assert event["body_sha256"] == hashlib.sha256(event["body"]).hexdigest()


def test_chunk_event_redacts_an_echoed_key_and_keeps_its_size() -> None:
    data = f'{{"error": {{"message": "Incorrect API key provided: {SERVICE}"}}}}'.encode()
    event = capture.chunk_event(
        request_id="r", seq=1, offset_ns=1, data=data, max_bytes=1000, delivered=True,
        redactor=_redactor(),
    )  # fmt: skip
    assert SERVICE.encode() not in event["data"]
    assert event["size"] == len(data)


def test_upstream_set_cookie_is_fingerprinted_in_the_completed_event() -> None:
    event = capture.completed_event(
        request_id="r", status=200, outcome="ok", error_type=None, error_message=None,
        upstream_status=200,
        response_headers=[("Set-Cookie", "__cf_bm=cookie-secret-555; path=/"), ("X-A", "1")],
        ttfb_ns=1, duration_ns=2, bytes_in=0, bytes_out=0, chunk_count=0, fingerprinter=FP,
    )  # fmt: skip
    assert "cookie-secret-555" not in str(event["response_headers"])
    assert {"name": "x-a", "value": "1"} in event["response_headers"]


def test_masking_keeps_the_length() -> None:
    mask = redaction.Redactor.masking(FP, [SERVICE])
    data = f"echo {SERVICE}!".encode()
    out = mask.known(data)
    assert len(out) == len(data)
    assert SERVICE.encode() not in out
    assert mask.known(b"nothing here") == b"nothing here"
