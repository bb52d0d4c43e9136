"""Admission for the API endpoints: who is refused before the body is read, and how.

Three refusals, cheapest first, each in the API's own error shape:
- 503 + Retry-After when ``max_in_flight`` exchanges are already being handled (load shedding;
  counted, not captured: under a flood capturing is the work being shed);
- 400 when a credential header appears twice (which one would the upstream believe?);
- 429 + Retry-After when the client IP's token bucket is empty.
The last two are handed to the Forwarder, which records them as ``rejected`` exchanges without a
body. The rate limit is keyed by the client IP resolved through the trusted proxies only, so a
spoofed X-Forwarded-For can neither dodge a limit nor lock a victim out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from proxy.errors import error_body
from proxy.forwarded import resolve_client_ip
from proxy.limits import InFlight, TokenBuckets
from proxy.routing import Endpoint
from proxy.settings import ProxySettings

SINGLE_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs each request its parser refuses at ERROR, with a traceback whose message
    quotes the offending bytes. A public endpoint gets such requests all day, and attacker bytes
    must not reach the logs: keep one DEBUG line naming the peer and the kind of error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "refused a malformed request from %s: %s (HTTP %s)"
            record.args = (peer, type(exc).__name__, exc.code)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return HTTP_SERVER_LOG.isEnabledFor(logging.DEBUG)
        return True


# The logger the proxy's HTTP server writes to (passed to aiohttp in proxy.app).
HTTP_SERVER_LOG = logging.getLogger("proxy.http")
HTTP_SERVER_LOG.addFilter(_MalformedRequestFilter())


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """A refusal decided before the body is read; the Forwarder records and answers it."""

    status: int
    error_type: str  # the API's error type, e.g. rate_limit_error
    reason: str  # our error_type in the completed event, e.g. rate_limited
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class GuardStats:
    rejected_overload: int = 0
    rejected_rate_limit: int = 0
    rejected_invalid: int = 0


class Guard:
    def __init__(self, settings: ProxySettings) -> None:
        self._trusted = settings.trusted_proxies
        self._buckets = (
            TokenBuckets(
                rate_per_s=settings.rate_limit_per_s,
                burst=settings.rate_limit_burst,
                max_keys=settings.rate_limit_max_clients,
            )
            if settings.rate_limit_per_s > 0
            else None
        )
        self.in_flight = InFlight(settings.max_in_flight)
        self.stats = GuardStats()

    def overloaded(self, endpoint: Endpoint) -> web.Response:
        self.stats.rejected_overload += 1
        return web.Response(
            status=503,
            body=error_body(
                endpoint.dialect,
                "Logorhythms is handling too many requests right now; retry after a second.",
                error_type="overloaded_error",
            ),
            content_type="application/json",
            headers={"Retry-After": "1"},
        )

    def check(self, request: web.Request) -> Rejection | None:
        """Why this request must be refused before its body is read, or None."""
        for name in SINGLE_CREDENTIAL_HEADERS:
            if len(request.headers.getall(name, ())) > 1:
                self.stats.rejected_invalid += 1
                return Rejection(
                    status=400,
                    error_type="invalid_request_error",
                    reason="duplicate_credential_header",
                    message=f"The {name} header appears more than once; send it once.",
                )
        if self._buckets is None:
            return None
        client_ip = resolve_client_ip(
            request.remote or "", request.headers.get("X-Forwarded-For"), self._trusted
        )
        wait_s = self._buckets.take(client_ip)
        if wait_s <= 0:
            return None
        self.stats.rejected_rate_limit += 1
        retry_after = max(1, math.ceil(wait_s))
        return Rejection(
            status=429,
            error_type="rate_limit_error",
            reason="rate_limited",
            message=f"Too many requests from your address; retry after {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
