from __future__ import annotations

from proxy.settings import Provider, Secret
from proxy.upstream import response_headers, upstream_headers

CLIENT = [
    ("Authorization", "Bearer sk-client"),
    ("Content-Type", "application/json"),
    ("Connection", "keep-alive, x-secret"),
    ("X-Forwarded-For", "6.6.6.6"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "tools-2024"),
    ("Accept-Encoding", "gzip"),
]


def test_service_key_replaces_the_clients() -> None:
    openai = Provider(name="openai", base_url="https://x/v1", api_key=Secret("sk-service"))
    out = upstream_headers(CLIENT, openai)
    assert out["Authorization"] == "Bearer sk-service"
    assert "sk-client" not in str(out)
    assert "Connection" not in out
    assert "X-Forwarded-For" not in out
    assert out["Accept-Encoding"] == "identity"
    anthropic = Provider(
        name="anthropic", base_url="https://x", dialect="anthropic", api_key=Secret("sk-ant")
    )
    out = upstream_headers([*CLIENT, ("x-api-key", "sk-client-2")], anthropic)
    assert out["x-api-key"] == "sk-ant"
    assert "Authorization" not in out
    assert out["anthropic-version"] == "2023-06-01"
    assert out["anthropic-beta"] == "tools-2024"


def test_client_key_only_for_bring_your_own_key() -> None:
    keyless = Provider(name="local", base_url="http://x/v1")
    assert "Authorization" not in upstream_headers(CLIENT, keyless)
    byok = Provider(
        name="groq", base_url="https://x/v1", api_key=Secret("sk-service"), bring_your_own_key=True
    )
    assert upstream_headers(CLIENT, byok)["Authorization"] == "Bearer sk-client"
    without_client_key = [h for h in CLIENT if h[0] != "Authorization"]
    assert upstream_headers(without_client_key, byok)["Authorization"] == "Bearer sk-service"


def test_response_headers_keep_request_ids_and_rate_limits() -> None:
    out = response_headers(
        {"x-request-id": "req-1", "x-ratelimit-remaining-requests": "9", "Connection": "close"}
    )
    assert dict(out) == {"x-request-id": "req-1", "x-ratelimit-remaining-requests": "9"}
