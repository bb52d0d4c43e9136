"""Credentials found by name and by shape, in every place a request carries them; and the names
and words that look like credentials but are not."""

from __future__ import annotations

import base64
import os

import orjson
import pytest

from proxy import credentials, redaction
from proxy.settings import Provider
from proxy.upstream import upstream_query
from tests.key_shapes import BEARER_TOKEN, NAMED, SHAPED

FP = redaction.Fingerprinter(b"k" * 32)


@pytest.mark.parametrize(
    "name",
    [
        "Authorization", "Proxy-Authorization", "X-Auth-Token", "x-api-key", "api-key",
        "anthropic-api-key", "OpenAI-Api-Key", "openai_api_key", "apiKey", "APIKey", "API_KEY",
        "token", "access_token", "refreshToken", "id_token", "client_secret", "secret",
        "password", "passwd", "db_pwd", "Cookie", "Set-Cookie", "session", "sessionId",
        "X-Session-Token", "credentials", "signature", "x-goog-api-key", "secret_key",
        "private_key", "Ocp-Apim-Subscription-Key", "DD-APPLICATION-KEY", "jwt",
        "openai-organization", "openai-project",
    ],
)  # fmt: skip
def test_credential_names(name: str) -> None:
    assert credentials.is_credential_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "max_tokens", "max_completion_tokens", "prompt_tokens", "completion_tokens",
        "total_tokens", "input_tokens", "x-ratelimit-remaining-tokens",
        "anthropic-ratelimit-output-tokens-reset", "top_k", "tokenizer", "author", "authors",
        "prompt_cache_key", "Idempotency-Key", "monkey", "keys", "keyword", "Sec-WebSocket-Key",
        "content", "role", "model", "user", "key",
    ],
)  # fmt: skip
def test_names_that_are_not_credentials(name: str) -> None:
    assert not credentials.is_credential_name(name)


def test_a_bare_key_is_a_credential_in_headers_and_queries_only() -> None:
    assert credentials.is_credential_name("key", bare_key=True)
    assert not credentials.is_credential_name("key")
    assert not credentials.is_credential_name("prompt_cache_key", bare_key=True)


@pytest.mark.parametrize("label", sorted(SHAPED))
@pytest.mark.parametrize(
    "template",
    [
        "{}",
        "my key is {} ok",
        '{{"x": "{}"}}',
        "key={}&a=1",
        "(see {}).",
        "Authorization: {}\n",
    ],
)
def test_every_shape_is_found_exactly(label: str, template: str) -> None:
    key = SHAPED[label]
    assert credentials.shaped_secrets(template.format(key).encode()) == [key.encode()]


def test_a_bearer_token_is_found_whatever_its_shape() -> None:
    for text in (f"Bearer {BEARER_TOKEN}", f'"authorization": "bearer  {BEARER_TOKEN}+/="'):
        (found,) = credentials.shaped_secrets(text.encode())
        assert found.startswith(BEARER_TOKEN.encode())


def test_prose_code_ids_and_images_have_no_shapes() -> None:
    text = (
        "Ask-me-anything about task-management-system-2024-review, risk-assessment-framework "
        "and sk-learn; bearer bonds; the Bearer of bad news. model gpt-4o-mini-2024-07-18, "
        "claude-3-5-sonnet-20241022, ids chatcmpl-AbC123dEf456GhI789jKl0, "
        "call_abc123def456ghi789jkl0, toolu_01A09q90qw90lq917835lq9, resp_67ccd2bed1ec8190, "
        "file-XjGxS3KTG0uNmNOK362iJua3, 550e8400-e29b-41d4-a716-446655440000, "
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, "
        "def compute_total_price_with_discount(order_items): return total_price_123. "
        "data:image/png;base64," + base64.b64encode(os.urandom(3000)).decode()
    )
    assert credentials.shaped_secrets(text.encode()) == []


def test_headers_by_name_and_by_shape() -> None:
    raw = [
        ("X-Auth-Token", NAMED["X-Auth-Token"]),
        ("anthropic-api-key", NAMED["anthropic-api-key"]),
        ("OpenAI-Api-Key", NAMED["OpenAI-Api-Key"]),
        ("X-Custom", f"prefix {SHAPED['groq']} suffix"),
        ("X-Forwarded-Authorization", f"Bearer {BEARER_TOKEN}"),
        ("Idempotency-Key", "idem-0123456789abcdef"),
        ("User-Agent", "OpenAI/Python 1.50.0"),
    ]
    stored, _ = FP.headers(raw)
    flat = orjson.dumps(stored)
    for secret in (*NAMED.values(), SHAPED["groq"], BEARER_TOKEN):
        assert secret.encode() not in flat
    values = {h["name"]: h["value"] for h in stored}
    assert values["x-custom"] == f"prefix {FP.fingerprint(SHAPED['groq'])} suffix"
    assert values["x-forwarded-authorization"] == f"Bearer {FP.fingerprint(BEARER_TOKEN)}"
    assert values["idempotency-key"] == "idem-0123456789abcdef"
    assert values["user-agent"] == "OpenAI/Python 1.50.0"


def test_query_names_are_decoded_until_stable_and_values_checked_by_shape() -> None:
    key, shaped = NAMED["query key"], SHAPED["google api key"]
    raw = f"%256Bey={key}&alt=sse&x={shaped}&q=a%20b"
    stored = FP.query(raw)
    assert key not in stored
    assert shaped not in stored
    assert stored.endswith("&alt=sse&x=" + FP.fingerprint(shaped) + "&q=a%20b")
    service = Provider(name="p", base_url="http://u")
    assert upstream_query(raw, service) == "alt=sse&q=a%20b"
    assert FP.query("a=1&b=%2F") == "a=1&b=%2F"  # untouched: byte for byte


def test_path_assignments_and_shapes_are_redacted() -> None:
    key = NAMED["path key"]
    redactor = FP.redactor([], "", (), f"/v1/x%253Fkey%253D{key}")
    stored = redactor.text(f"/v1/x%3Fkey%3D{key}/{SHAPED['npm']}")
    assert key not in stored
    assert SHAPED["npm"] not in stored
    assert FP.text(f"/v1/x?key={key}&a=1") == f"/v1/x?key={FP.fingerprint(key)}&a=1"


def _body() -> bytes:
    arguments = orjson.dumps(
        {"password": NAMED["body tool argument password"], "key": "Enter", "n": 2}
    ).decode()
    named = NAMED["body token"]  # also under its name below: replaced in both places
    doc = {
        "model": "gpt-4o-mini",
        "max_tokens": 100,
        "prompt_cache_key": "tenant-42-cache",
        "openai_api_key": NAMED["body openai_api_key"],
        "token": NAMED["body token"],
        "metadata": {"deep": {"client_secret": NAMED["body nested client_secret"]}},
        "messages": [
            {"role": "user", "content": "keys: " + " ".join([*SHAPED.values(), named])},
            {"role": "user", "content": f"curl -H 'Authorization: Bearer {BEARER_TOKEN}'"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "call_1", "function": {"name": "login", "arguments": arguments}}
                ],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}}}],
    }  # fmt: skip
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def test_body_keys_at_any_depth_and_in_tool_arguments_leave_valid_json() -> None:
    body = _body()
    redactor = FP.redactor([], "", ())
    out = redactor.body(body)
    for secret in (*SHAPED.values(), BEARER_TOKEN, *NAMED.values()):
        if secret.encode() in body:
            assert secret.encode() not in out, secret
    doc = orjson.loads(out)  # still JSON
    assert doc["max_tokens"] == 100
    assert doc["prompt_cache_key"] == "tenant-42-cache"
    assert doc["token"] == FP.fingerprint(NAMED["body token"])
    arguments = orjson.loads(doc["messages"][2]["tool_calls"][0]["function"]["arguments"])
    assert arguments == {
        "password": FP.fingerprint(NAMED["body tool argument password"]),
        "key": "Enter",
        "n": 2,
    }
    assert doc["tools"] == orjson.loads(body)["tools"]
    # Every byte outside the replaced values is as it was (spacing of the indented dump too).
    expected = body
    for secret in (*SHAPED.values(), BEARER_TOKEN, *NAMED.values()):
        expected = expected.replace(secret.encode(), FP.fingerprint(secret).encode())
    assert out == expected


def test_what_the_body_held_is_caught_when_the_upstream_echoes_it() -> None:
    redactor = FP.redactor([], "", ())
    redactor.body(_body())
    echoed = (
        f"Incorrect API key provided: {NAMED['body token']} / {SHAPED['xai']} / {BEARER_TOKEN}"
    ).encode()
    out = redactor.known(echoed)
    for secret in (NAMED["body token"], SHAPED["xai"], BEARER_TOKEN):
        assert secret.encode() not in out
    assert out.startswith(b"Incorrect API key provided: fp:")
