"""Which provider serves a request, and where upstream it goes."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.settings import Provider, ProxySettings


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A route template the proxy serves, with the API dialect it speaks."""

    path: str
    dialect: str
    streams: bool = True


@dataclass(frozen=True, slots=True)
class Route:
    provider: Provider
    upstream_url: str
    model_sent: str | None


class Router:
    def __init__(self, settings: ProxySettings) -> None:
        self._settings = settings
        self._default_by_dialect: dict[str, Provider] = {}
        for provider in settings.providers:
            self._default_by_dialect.setdefault(provider.dialect, provider)
        default = settings.provider(settings.default_provider)
        self._default_by_dialect[default.dialect] = default

    def route(self, endpoint: Endpoint, path: str, model: str | None) -> Route | None:
        """The route for a request, or None when no provider speaks the endpoint's dialect."""
        provider = self._default_by_dialect.get(endpoint.dialect)
        if provider is None:
            return None
        return Route(provider, upstream_url(provider, path), model)


def upstream_url(provider: Provider, path: str) -> str:
    # OpenAI-style base URLs end in /v1 (OPENAI_BASE_URL convention); Anthropic's do not.
    if provider.dialect == "openai" and path.startswith("/v1/"):
        path = path[3:]
    return provider.base_url + path
