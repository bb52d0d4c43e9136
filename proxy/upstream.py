"""The client side of the proxy: one pooled session, timeouts, and which headers cross over."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import aiohttp
from multidict import CIMultiDict

from proxy import credentials
from proxy.settings import Provider, ProxySettings

# RFC 9110 §7.6.1 hop-by-hop headers, plus framing headers aiohttp sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        # aiohttp's server decodes a gzip/deflate request body (bounded by client_max_size, so a
        # compression bomb gets 413); what goes upstream is the decoded body, so not the label.
        "content-encoding",
    }
)
# Client credentials are never forwarded: the service injects its own key.
CLIENT_CREDENTIALS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key"})
# Headers the client must not be able to use to steer or impersonate anything upstream.
NOT_FORWARDED = frozenset(
    {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded", "x-real-ip", "cookie"}
)
RESPONSE_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "trailer", "proxy-authenticate"}
)


def create_session(settings: ProxySettings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_pool_size,
        ttl_dns_cache=300,
        keepalive_timeout=60,
    )
    # Only connect and the optional total are aiohttp's: proxy.relay times the response head
    # (first byte) and each read (between chunks) itself, so the two can differ and be told apart.
    timeout = aiohttp.ClientTimeout(
        total=settings.upstream_total_timeout_s,  # None by default: never cut a healthy stream
        connect=settings.upstream_connect_timeout_s,
        sock_read=None,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,  # bytes pass through exactly as the upstream sent them
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        raise_for_status=False,
    )


def upstream_headers(
    client_headers: Iterable[tuple[str, str]], provider: Provider
) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop and credentials, plus the provider's own key.

    A bring-your-own-key provider gets the client's key when the client sent one, else ours.
    """
    client_headers = list(client_headers)
    # Headers the client named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
    nominated = {
        token.strip().lower()
        for name, value in client_headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    client_key: tuple[str, str] | None = None
    for name, value in client_headers:
        lname = name.lower()
        if lname in nominated:
            continue
        if lname in CLIENT_CREDENTIALS:
            client_key = client_key or (name, value)
            continue
        if lname in HOP_BY_HOP or lname in NOT_FORWARDED or lname == "accept-encoding":
            continue
        out.add(name, value)
    # Ask for identity encoding so what is captured is what an analyst can read.
    out["Accept-Encoding"] = "identity"
    if provider.bring_your_own_key and client_key is not None:
        out.add(*client_key)
    elif provider.api_key is not None:
        key = provider.api_key.reveal()
        if provider.dialect == "anthropic":
            out["x-api-key"] = key
        else:
            out["Authorization"] = f"Bearer {key}"
    return out


def upstream_query(query_string: str, provider: Provider) -> str | None:
    """The client's raw query string minus credential parameters, which, like credential
    headers, go upstream only when the provider uses the client's own key.

    A parameter is a credential by its name decoded until stable (``?key=``, ``?%256Bey=``,
    ``?access_token=``) or by its value's shape (``?x=sk-…``, decoded until stable too), so no
    encoding lets a key through. Other parameters are kept byte for byte, in order.
    """
    if not query_string or provider.bring_your_own_key:
        return query_string or None
    kept = []
    for part in query_string.split("&"):
        name, _, value = part.partition("=")
        if credentials.is_credential_name(credentials.query_param_name(name), bare_key=True):
            continue
        plain = credentials.query_param_name(value).encode("utf-8", "surrogateescape")
        if credentials.shaped_spans(plain):
            continue
        kept.append(part)
    return "&".join(kept) or None


def response_headers(upstream: Mapping[str, str] | CIMultiDict[str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        if name.lower() not in RESPONSE_NOT_FORWARDED:
            out.add(name, value)
    return out
