"""Admission for the API endpoints: who is refused before the body is read, and how; and the
deadlines on reading the body.

Refusals, cheapest first, each in the API's own error shape:
- 429 + Retry-After when the client IP already has ``max_in_flight_per_client`` exchanges in
  flight, so that one address cannot take every slot (counted, not captured: it is shedding);
- 503 + Retry-After when ``max_in_flight`` exchanges are already being handled (load shedding;
  counted, not captured: under a flood capturing is the work being shed);
- 400 when the request target is not a path (absolute-form: we are not a forward proxy), and
  405 for a method no LLM API uses (both also close the connection);
- 400 when a credential header appears twice (which one would the upstream believe?);
- 429 + Retry-After when the client IP's token bucket is empty.
The last three are handed to the ExchangeHandler (proxy/forward.py), which records them as
``rejected`` exchanges without a body. Both per-client limits are keyed by the client IP
resolved through the trusted proxies only, so a spoofed X-Forwarded-For can neither dodge a
limit nor lock a victim out.

Once admitted, the body must start within ``body_first_byte_timeout_s`` and keep coming, each
read within ``body_read_timeout_s`` (``read_body``): a client trickling its upload is answered
408 and disconnected instead of holding its slot for ever.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from proxy.client_ip import resolve_client_ip
from proxy.errors import BodyTimeoutError, error_body
from proxy.limits import InFlight, InFlightPerKey, TokenBuckets
from proxy.routing import Endpoint
from proxy.settings import ProxySettings

SINGLE_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")
# What an LLM API is called with. Anything else (TRACE, WebDAV's, invented ones, which the
# pure-Python parser accepts as tokens) would otherwise be passed upstream as it is.
API_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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
    """A refusal decided before the body is read; the ExchangeHandler records and answers it."""

    status: int
    error_type: str  # the API's error type, e.g. rate_limit_error
    reason: str  # our error_type in the completed event, e.g. rate_limited
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False  # end the connection after answering


@dataclass(slots=True)
class GuardStats:
    rejected_overload: int = 0
    rejected_client_cap: int = 0
    rejected_rate_limit: int = 0
    rejected_invalid: int = 0
    # Refused by the HTTP parser before any handler ran (proxy/protocol.py): no exchange.
    rejected_malformed: int = 0


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
        self.in_flight_per_client = InFlightPerKey(settings.max_in_flight_per_client)
        self.stats = GuardStats()

    def client_ip(self, request: web.Request) -> str:
        """The address the per-client limits are keyed by (proxy/client_ip.py)."""
        return resolve_client_ip(
            request.remote or "", request.headers.get("X-Forwarded-For"), self._trusted
        )

    def enter(self, client_ip: str, endpoint: Endpoint) -> web.Response | None:
        """Take a slot for one exchange of ``client_ip`` (then ``leave`` it), or the refusal.

        The client's own cap is checked first: a client at its cap takes no global slot, so it
        cannot push everyone else into 503s.
        """
        if not self.in_flight_per_client.try_enter(client_ip):
            self.stats.rejected_client_cap += 1
            limit = self.in_flight_per_client.limit
            return _refusal(
                endpoint,
                429,
                f"Too many requests from your address at once (at most {limit}); "
                "retry after a second.",
                error_type="rate_limit_error",
            )
        if not self.in_flight.try_enter():
            self.in_flight_per_client.leave(client_ip)
            return self.overloaded(endpoint)
        return None

    def leave(self, client_ip: str) -> None:
        self.in_flight.leave()
        self.in_flight_per_client.leave(client_ip)

    def overloaded(self, endpoint: Endpoint) -> web.Response:
        self.stats.rejected_overload += 1
        return _refusal(
            endpoint,
            503,
            "Logorhythms is handling too many requests right now; retry after a second.",
            error_type="overloaded_error",
        )

    def check(self, request: web.Request, client_ip: str) -> Rejection | None:
        """Why this request must be refused before its body is read, or None."""
        if not request.raw_path.startswith("/"):
            # Absolute-form (``POST http://host/v1/...``): a forward-proxy request. The path part
            # would route like any other, but the client believes it is talking to that host.
            self.stats.rejected_invalid += 1
            return Rejection(
                status=400,
                error_type="invalid_request_error",
                reason="absolute_form_target",
                message="The request target must be a path such as /v1/chat/completions, not a "
                "URL: Logorhythms is not a forward proxy. Set it as your SDK's base URL.",
                close=True,
            )
        if request.method not in API_METHODS:
            self.stats.rejected_invalid += 1
            return Rejection(
                status=405,
                error_type="invalid_request_error",
                reason="method_not_allowed",
                message="This HTTP method is not part of the API; use GET, POST or DELETE.",
                headers={"Allow": ", ".join(sorted(API_METHODS))},
                close=True,
            )
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


def _refusal(endpoint: Endpoint, status: int, message: str, *, error_type: str) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(endpoint.dialect, message, error_type=error_type),
        content_type="application/json",
        headers={"Retry-After": "1"},
    )


async def read_body(
    request: web.Request,
    *,
    max_bytes: int,
    first_byte_timeout_s: float,
    read_timeout_s: float,
) -> bytes:
    """The whole request body, with a deadline on its first byte and on each later read.

    Raises ``BodyTimeoutError`` when the client stalls, and aiohttp's
    ``HTTPRequestEntityTooLarge`` beyond ``max_bytes`` (as ``request.read()`` does).
    """
    content = request.content
    if content.is_eof():
        # The whole body came with the head (the usual case): nothing to wait for, no timer.
        return await request.read()
    loop = asyncio.get_running_loop()
    body = bytearray()
    started = loop.time()
    try:
        async with asyncio.timeout(first_byte_timeout_s) as deadline:
            while chunk := await content.readany():
                body += chunk
                if len(body) > max_bytes:
                    raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=len(body))
                deadline.reschedule(loop.time() + read_timeout_s)
    except TimeoutError:
        waited = loop.time() - started
        if body:
            message = (
                f"The request body stopped arriving: nothing for {read_timeout_s:g} s after "
                f"{len(body)} bytes."
            )
        else:
            message = f"The request body did not start within {first_byte_timeout_s:g} s."
        raise BodyTimeoutError(message, waited_s=waited) from None
    return bytes(body)
