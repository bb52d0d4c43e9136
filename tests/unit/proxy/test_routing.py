from __future__ import annotations

import orjson
import pytest

from proxy.errors import ConfigError
from proxy.routing import (
    Endpoint,
    NoRoute,
    PathRefusal,
    Route,
    Router,
    models_body,
    upstream_path,
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
    # No provider of the endpoint's API: that is what the client is told, not an unknown model.
    claude = strict.route(MESSAGES, MESSAGES.path, "claude-haiku-4-5")
    assert isinstance(claude, NoRoute)
    assert "No upstream provider speaking the anthropic API" in claude.message
    assert "'claude-haiku-4-5'" in claude.message


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
    "raw_path",
    [
        "/v1/files",
        "/v1/files/",
        "/v1/files/file-abc/content",
        "/v1/responses/resp_1/input_items",
        "/v1/models/ft:gpt-4o-mini:org:custom:id",
        "/v1/fine_tuning/jobs/ftjob-1/events",
    ],
)
def test_plain_paths_are_sent_as_they_came(raw_path: str) -> None:
    assert upstream_path(raw_path, raw_path, "limit=2&after=x%20y") == raw_path


def test_encoded_plain_characters_are_sent_decoded() -> None:
    # One form only: what is checked is what is sent, with nothing left to decode.
    assert upstream_path("/v1/files/file%2Dabc", "/v1/files/file%2Dabc", "") == "/v1/files/file-abc"


@pytest.mark.parametrize(
    ("raw_path", "reason"),
    [
        ("/v1/../admin", "path_dot_segment"),
        ("/v1/./files", "path_dot_segment"),
        ("/v1/files/..", "path_dot_segment"),
        ("/v1/chat/%2e%2e/%2e%2e/admin", "path_dot_segment"),
        ("/v1/%2E%2E/admin", "path_dot_segment"),
        ("/v1/%252e%252e/admin/keys", "path_dot_segment"),
        ("/v1/%25252e%25252e/admin", "path_dot_segment"),
        ("/v1/.%2e/admin", "path_dot_segment"),
        ("/v1/a/..;/admin", "path_dot_segment"),
        ("/v1/a/..%3b/admin", "path_dot_segment"),
        ("/v1/...", "path_dot_segment"),
        ("/v1/chat/completions/..%2f..%2fadmin", "path_encoded_slash"),
        ("/v1/chat/completions%2f..", "path_encoded_slash"),
        ("/v1/a%252fb", "path_encoded_slash"),
        ("/v1/%c0%ae%c0%ae/admin", "path_character"),  # overlong UTF-8 "."
        ("/v1/a%c0%afb", "path_character"),  # overlong UTF-8 "/"
        ("/v1/files%5c..%5cadmin", "path_character"),
        ("/v1/a%255cb", "path_character"),
        ("/v1/x%3Fkey=secret", "path_character"),
        ("/v1/x%253Fkey=secret", "path_character"),
        ("/v1/x%23frag", "path_character"),
        ("/v1/a;b", "path_character"),
        ("/v1/a%00b", "path_character"),
        ("/v1/a%0d%0aHost:x", "path_character"),
        ("/v1/a%7fb", "path_character"),
        ("/v1/caf%C3%A9", "path_character"),
        ("/v1/a%25", "path_character"),
        ("/v1/%2525252525252e", "path_encoding"),
        ("/v1//files", "path_empty_segment"),
        ("/v1/" + "a" * 2100, "path_too_long"),
    ],
)
def test_paths_that_could_leave_the_base_url_are_refused(raw_path: str, reason: str) -> None:
    refusal = upstream_path(raw_path, raw_path, "")
    assert isinstance(refusal, PathRefusal)
    assert refusal.reason == reason
    assert refusal.status == (414 if reason == "path_too_long" else 400)


def test_absolute_form_targets_and_odd_queries_are_refused() -> None:
    absolute = upstream_path("http://127.0.0.1:1/v1/files", "/v1/files", "")
    assert isinstance(absolute, PathRefusal)
    assert absolute.reason == "absolute_form_target"
    for query in ("a=\\b", "a=b#c", 'a="b"', "a=<b>", "a=\x00"):
        refusal = upstream_path("/v1/files", "/v1/files", query)
        assert isinstance(refusal, PathRefusal), query
        assert refusal.reason == "query_character"
