from __future__ import annotations

import orjson
import pytest

from proxy.errors import ConfigError
from proxy.routing import (
    Endpoint,
    NoRoute,
    Route,
    Router,
    models_body,
    passthrough_path_ok,
    with_model,
)
from proxy.settings import Provider, ProxySettings

CHAT = Endpoint("/v1/chat/completions", "openai")
MESSAGES = Endpoint("/v1/messages", "anthropic")


def settings(**overrides: object) -> ProxySettings:
    values: dict[str, object] = {
        "providers": (
            Provider(name="openai", base_url="https://api.openai.com/v1"),
            Provider(name="anthropic", base_url="https://api.anthropic.com", dialect="anthropic"),
            Provider(name="groq", base_url="https://api.groq.com/openai/v1",
                     models=("llama-3.1-8b-instant",)),
            Provider(name="openrouter", base_url="https://openrouter.ai/api/v1",
                     models=("anthropic/claude-sonnet-4",)),
        ),
        "model_map": {"fast": "groq/llama-3.1-8b-instant"},
    }  # fmt: skip
    values.update(overrides)
    return ProxySettings(**values)  # type: ignore[arg-type]


def route(router: Router, model: str | None, endpoint: Endpoint = CHAT) -> Route:
    result = router.route(endpoint, endpoint.path, model)
    assert isinstance(result, Route), result
    return result


def test_alias_then_model_list_then_prefix_then_default() -> None:
    router = Router(settings())
    alias = route(router, "fast")
    assert (alias.provider.name, alias.model_sent) == ("groq", "llama-3.1-8b-instant")
    assert alias.upstream_url == "https://api.groq.com/openai/v1/chat/completions"
    listed = route(router, "llama-3.1-8b-instant")
    assert (listed.provider.name, listed.model_sent) == ("groq", "llama-3.1-8b-instant")
    prefixed = route(router, "openrouter/anthropic/claude-sonnet-4")
    assert (prefixed.provider.name, prefixed.model_sent) == (
        "openrouter",
        "anthropic/claude-sonnet-4",
    )
    # A model that is itself "a/b" and listed by a provider is not mistaken for a prefix.
    assert route(router, "anthropic/claude-sonnet-4").provider.name == "openrouter"
    default = route(router, "gpt-4o")
    assert (default.provider.name, default.model_sent) == ("openai", "gpt-4o")
    assert default.upstream_url == "https://api.openai.com/v1/chat/completions"


def test_each_dialect_has_its_own_default() -> None:
    router = Router(settings())
    claude = route(router, "claude-haiku-4-5", MESSAGES)
    assert claude.provider.name == "anthropic"
    assert claude.upstream_url == "https://api.anthropic.com/v1/messages"
    assert route(router, None, Endpoint("/v1/{tail}", "anthropic")).provider.name == "anthropic"


def test_unknown_models_have_no_route() -> None:
    router = Router(settings())
    unknown = router.route(CHAT, CHAT.path, "groq/not-served")
    assert isinstance(unknown, NoRoute)
    assert "groq/not-served" in unknown.message
    assert "/v1/models" in unknown.message
    wrong_dialect = router.route(MESSAGES, MESSAGES.path, "fast")
    assert isinstance(wrong_dialect, NoRoute)
    assert "openai API" in wrong_dialect.message
    # With a default that lists its models, nothing is a catch-all.
    strict = Router(settings(providers=(
        Provider(name="openai", base_url="https://api.openai.com/v1", models=("gpt-4o",)),
        Provider(name="groq", base_url="https://api.groq.com/openai/v1",
                 models=("llama-3.1-8b-instant",)),
    )))  # fmt: skip
    assert isinstance(strict.route(CHAT, CHAT.path, "gpt-5"), NoRoute)
    assert isinstance(strict.route(MESSAGES, MESSAGES.path, None), NoRoute)


def test_body_rewrite_only_changes_the_model() -> None:
    body = b'{"model":"fast","messages":[{"role":"user","content":"caf\\u00e9"}],"n":2}'
    rewritten = orjson.loads(with_model(body, "llama-3.1-8b-instant"))
    assert rewritten == {**orjson.loads(body), "model": "llama-3.1-8b-instant"}


def test_models_list_is_the_union_of_configured_models() -> None:
    doc = orjson.loads(models_body(settings()))
    assert doc["object"] == "list"
    ids = {m["id"]: m["owned_by"] for m in doc["data"]}
    assert ids == {
        "llama-3.1-8b-instant": "groq",
        "groq/llama-3.1-8b-instant": "groq",
        "anthropic/claude-sonnet-4": "openrouter",
        "openrouter/anthropic/claude-sonnet-4": "openrouter",
        "fast": "groq",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model_map": {"x": "nobody/model"}}, "model_map['x']"),
        ({"model_map": {"x": "groq"}}, "'provider/model'"),
        ({"default_provider": "mistral"}, "default provider 'mistral'"),
    ],
)
def test_settings_reject_inconsistent_routing(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        settings(**overrides)


def test_provider_fields_are_checked() -> None:
    with pytest.raises(ConfigError, match="dialect 'gemini'"):
        Provider(name="g", base_url="https://x", dialect="gemini")
    with pytest.raises(ConfigError, match="http:// or https://"):
        Provider(name="g", base_url="ftp://x")
    with pytest.raises(ConfigError, match="without '/'"):
        Provider(name="a/b", base_url="https://x")


@pytest.mark.parametrize(
    ("raw_path", "ok"),
    [
        ("/v1/files", True),
        ("/v1/files/file-abc/content?limit=2", True),
        ("/v1/responses/resp_1/input_items", True),
        ("/v1/../admin", False),
        ("/v1/chat/%2e%2e/%2e%2e/admin", False),
        ("/v1/chat/completions/..%2f..%2fadmin", False),
        ("/v1/chat/completions%2f..", False),
        ("/v1/./files", False),
        ("/v1//files", False),
        ("/v1/files%5c..%5cadmin", False),
    ],
)
def test_pass_through_paths_cannot_leave_the_api_prefix(raw_path: str, ok: bool) -> None:
    assert passthrough_path_ok(raw_path) is ok
