"""Which provider serves a request, where upstream it goes, and which model name it is sent.

Order: the explicit model map (aliases, and each provider's own model list), then a
``provider/model`` prefix, then the dialect's default provider if it takes any model. Only
providers speaking the endpoint's dialect are considered: the proxy does not translate APIs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_to_bytes

import orjson

from proxy.settings import Provider, ProxySettings


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A route template the proxy serves, with the API dialect it speaks."""

    path: str
    dialect: str
    # "forward": send upstream; "models": answer locally with the configured models.
    kind: Literal["forward", "models"] = "forward"


@dataclass(frozen=True, slots=True)
class Route:
    provider: Provider
    upstream_url: str
    model_sent: str | None


@dataclass(frozen=True, slots=True)
class NoRoute:
    """Why a request cannot be routed, as a message the client can act on."""

    message: str


class Router:
    def __init__(self, settings: ProxySettings) -> None:
        self._providers = {p.name: p for p in settings.providers}
        self._default_by_dialect: dict[str, Provider] = {}
        for provider in settings.providers:
            self._default_by_dialect.setdefault(provider.dialect, provider)
        default = settings.provider(settings.default_provider)
        self._default_by_dialect[default.dialect] = default
        self._explicit: dict[str, tuple[Provider, str]] = {}
        for provider in settings.providers:
            for model in provider.models:
                self._explicit.setdefault(model, (provider, model))
        for alias, target in settings.model_map.items():
            name, _, model = target.partition("/")
            self._explicit[alias] = (self._providers[name], model)

    def route(self, endpoint: Endpoint, path: str, model: str | None) -> Route | NoRoute:
        """The route for a request, or why there is none (nothing is sent upstream then)."""
        default = self._default_by_dialect.get(endpoint.dialect)
        if model is None:
            if default is None:
                return NoRoute(
                    f"No upstream provider speaking the {endpoint.dialect} API is set up."
                )
            return Route(default, upstream_url(default, path), None)
        provider: Provider | None
        explicit = self._explicit.get(model)
        if explicit is not None:
            provider, model_sent = explicit
        else:
            provider, model_sent = self._prefixed(model, endpoint.dialect), model
            if provider is not None:
                model_sent = model.partition("/")[2]
                if not provider.serves(model_sent):
                    return _unknown(model)
            elif default is not None and default.serves(model):
                provider = default
        if provider is None and default is None:
            # No provider speaks this endpoint's API at all: say so, not that the model is unknown
            # (a Claude model through /v1/messages on a proxy set up for OpenAI only).
            return NoRoute(
                f"No upstream provider speaking the {endpoint.dialect} API is set up here, so "
                f"{model!r} cannot be served. GET /v1/models lists the models you can use."
            )
        if provider is None:
            return _unknown(model)
        if provider.dialect != endpoint.dialect:
            return NoRoute(
                f"The model {model!r} is served by {provider.name}, which speaks the "
                f"{provider.dialect} API; call it through that API's endpoints."
            )
        return Route(provider, upstream_url(provider, path), model_sent)

    def _prefixed(self, model: str, dialect: str) -> Provider | None:
        # Model names may hold slashes themselves (OpenRouter's "anthropic/claude-…"), so a
        # prefix counts only when it names a provider of this dialect.
        name, sep, rest = model.partition("/")
        provider = self._providers.get(name) if sep and rest else None
        return provider if provider is not None and provider.dialect == dialect else None


def _unknown(model: str) -> NoRoute:
    return NoRoute(
        f"The model {model!r} does not exist or is not served here. "
        "GET /v1/models lists the models you can use."
    )


# Longer paths are refused (414): no API path the proxy forwards comes near it.
MAX_PATH_CHARS = 2048
# A path segment, once fully decoded, may hold only these: RFC 3986 unreserved characters and the
# sub-delimiters that need no encoding, minus ";" (Tomcat's "..;" path parameters) and "&". With
# nothing in it that a client library or an upstream would encode or decode, the string sent is
# the string checked: no layer can see a different path. Non-ASCII, "%", "\\", "?", "#" and
# control characters are refused by omission.
_SEGMENT = re.compile(r"[A-Za-z0-9._~:@!$'()*+,=-]+")
# Query bytes that travel as they came: printable ASCII without "#", "\\" and quoting characters.
_QUERY = re.compile(r"[A-Za-z0-9._~:@!$&'()*+,;=/?%\[\]|{}^`-]*")
_MAX_DECODINGS = 4


@dataclass(frozen=True, slots=True)
class PathRefusal:
    """Why a request path is not sent upstream: the status, the completed event's error type,
    and a message the client can act on."""

    status: int
    reason: str
    message: str


def _refuse(reason: str, what: str, status: int = 400) -> PathRefusal:
    return PathRefusal(status, reason, f"The request path {what}; send a plain /v1/... path.")


def upstream_path(request_target: str, raw_path: str, raw_query: str) -> str | PathRefusal:
    """The one validated form of a request path: percent-decoded until stable, refused when it
    could mean anything but a path under the provider's base URL.

    ``request_target`` is the request line's target as received (to refuse absolute-form),
    ``raw_path`` and ``raw_query`` its undecoded parts. Refused: an absolute-form target, paths
    over ``MAX_PATH_CHARS``, nested encodings that do not settle, a ``/`` that was encoded, dot
    segments (``.``, ``..``, ``%2e``, ``%252e``, ``..;``, overlong UTF-8 ``%c0%ae``), empty
    segments, and anything outside ``_SEGMENT`` (``\\``, ``?``, ``#``, ``;``, ``%``, NUL, control
    and non-ASCII characters); a query with bytes outside ``_QUERY``. The returned path is what
    is sent, byte for byte: it needs no encoding.
    """
    if not request_target.startswith("/"):
        return _refuse("absolute_form_target", "must be in origin form (no scheme or host)")
    if len(raw_path) > MAX_PATH_CHARS:
        return _refuse("path_too_long", f"is longer than {MAX_PATH_CHARS} characters", 414)
    data = raw_path.encode("utf-8", "surrogateescape")
    for _ in range(_MAX_DECODINGS):
        once = unquote_to_bytes(data)
        if once == data:
            break
        data = once
    else:
        return _refuse("path_encoding", "is percent-encoded more times than can be checked")
    # Bytes that are not ASCII (overlong UTF-8 forms of "." and "/" among them) become "\ufffd",
    # which no segment may hold.
    decoded = data.decode("ascii", "replace")
    if decoded.count("/") != raw_path.count("/"):
        return _refuse("path_encoded_slash", "holds an encoded '/' inside a segment")
    segments = decoded.split("/")[1:]
    for i, segment in enumerate(segments):
        if not segment:
            if i == len(segments) - 1:
                continue  # a trailing slash
            return _refuse("path_empty_segment", "holds an empty segment ('//')")
        if segment.strip(".") == "" or segment.startswith(".."):
            return _refuse("path_dot_segment", "holds a '.' or '..' segment")
        if _SEGMENT.fullmatch(segment) is None:
            return _refuse(
                "path_character",
                "holds a character that is not allowed in a path segment "
                "('\\', '?', '#', ';', '%', control or non-ASCII characters)",
            )
    if _QUERY.fullmatch(raw_query) is None:
        return _refuse("query_character", "has a query string with characters not allowed")
    return decoded


def upstream_url(provider: Provider, path: str) -> str:
    # OpenAI-style base URLs end in /v1 (OPENAI_BASE_URL convention); Anthropic's do not.
    if provider.dialect == "openai" and path.startswith("/v1/"):
        path = path[3:]
    return provider.base_url + path


def with_model(body: bytes, model: str | None) -> bytes:
    """The request body with its model field replaced: only called when routing renamed it.

    Bodies that need no rewrite are sent as the exact bytes the client sent.
    """
    doc = orjson.loads(body)  # routing found a model in it, so it is a JSON object
    doc["model"] = model
    return orjson.dumps(doc)


def models_body(settings: ProxySettings) -> bytes:
    """GET /v1/models: every configured model and alias, in OpenAI's list shape."""
    seen: dict[str, str] = {}
    for provider in settings.providers:
        for model in provider.models:
            seen.setdefault(model, provider.name)
            seen.setdefault(f"{provider.name}/{model}", provider.name)
    for alias, target in settings.model_map.items():
        seen.setdefault(alias, target.partition("/")[0])
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": model, "object": "model", "created": 0, "owned_by": owner}
                for model, owner in seen.items()
            ],
        }
    )
