"""Serve one exchange: read the request, route it, and answer it — locally, with an error, or
by relaying the upstream (proxy/relay.py) — recording every step (proxy/exchange.py).

Every request that reaches a handler becomes exactly one captured exchange, refused ones too:
a request event first, a completed event last.
"""

from __future__ import annotations

import asyncio
import os
import socket

import aiohttp
from aiohttp import web

from proxy import capture, redaction
from proxy.client_ip import resolve_client_ip
from proxy.errors import BodyTimeoutError
from proxy.exchange import REQUEST_ID_HEADER, EventRecorder, Exchange
from proxy.guard import Rejection, read_body
from proxy.publisher import Publisher
from proxy.relay import Relay
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
from proxy.settings import ProxySettings
from proxy.upstream import upstream_query
from schemas import Codec

_INSTANCE = f"{socket.gethostname()}:{os.getpid()}"


def _checked_path(request: web.Request, raw_query: str) -> tuple[str | None, Rejection | None]:
    """The path to send upstream (proxy.routing.upstream_path), or why it is refused."""
    checked = upstream_path(request.raw_path, request.rel_url.raw_path, raw_query)
    if isinstance(checked, PathRefusal):
        refusal = Rejection(
            status=checked.status,
            error_type="invalid_request_error",
            reason=checked.reason,
            message=checked.message,
        )
        return None, refusal
    return checked, None


class ExchangeHandler:
    """Serves and captures every exchange of one proxy process."""

    def __init__(
        self,
        *,
        settings: ProxySettings,
        session: aiohttp.ClientSession,
        publisher: Publisher,
        codec: Codec,
        router: Router,
    ) -> None:
        self._settings = settings
        self._session = session
        self._router = router
        self._fingerprinter = redaction.Fingerprinter(settings.fingerprint_key.reveal().encode())
        self._service_secrets = tuple(p.api_key.reveal() for p in settings.providers if p.api_key)
        # An upstream that echoes the Authorization it got would hand the service's own key to an
        # anonymous client: that one secret is masked in what the client receives too.
        self._shield = redaction.Redactor.masking(self._fingerprinter, self._service_secrets)
        self._recorder = EventRecorder(
            codec=codec,
            publisher=publisher,
            fingerprinter=self._fingerprinter,
            max_event_bytes=settings.max_event_bytes,
            enabled=settings.capture,
        )
        self._models_body = models_body(settings)
        self.lists_models = any(p.models for p in settings.providers) or bool(settings.model_map)
        self.served = 0

    async def handle(
        self, request: web.Request, endpoint: Endpoint, rejection: Rejection | None = None
    ) -> web.StreamResponse:
        """Serve and capture one exchange; ``rejection``: refused by proxy.guard, so the body is
        never read."""
        self.served += 1
        raw_headers = [
            (k.decode("latin-1"), v.decode("utf-8", "backslashreplace"))
            for k, v in request.raw_headers
        ]
        raw_query = request.rel_url.raw_query_string
        redactor = self._fingerprinter.redactor(
            raw_headers, raw_query, self._service_secrets, request.rel_url.raw_path
        )
        exchange = Exchange(self._recorder, redactor, endpoint.dialect)
        path: str | None = None  # the validated path, sent upstream exactly as it is
        if rejection is None and endpoint.kind == "forward":
            path, rejection = _checked_path(request, raw_query)
        if rejection is not None:
            exchange.outcome.fail("rejected", rejection.reason, rejection.message)
        else:
            await self._read_body(request, exchange)
        model, stream = capture.peek_json(exchange.body)
        route = (
            self._router.route(endpoint, path, model)
            if not exchange.outcome.error_type and path is not None
            else None
        )
        routed = route if isinstance(route, Route) else None
        if routed is not None:
            query = upstream_query(raw_query, routed.provider)
            exchange.sent_url = routed.upstream_url + (f"?{query}" if query else "")
        request_event = exchange.capture_request(
            self._captured(request, endpoint, exchange, raw_headers, model, stream, routed)
        )
        if routed is None:
            request_event.emit()  # nothing to wait for: the event goes out first, now
        response: web.StreamResponse | None = None
        try:
            if routed is None:
                response = self._answer_here(exchange, rejection, route)
            else:
                body = exchange.body
                sent = body if routed.model_sent == model else with_model(body, routed.model_sent)
                relay = Relay(
                    exchange, request, routed, request_event, raw_headers,
                    session=self._session, settings=self._settings, shield=self._shield,
                )  # fmt: skip
                response = await relay.run(sent)
            return response
        except asyncio.CancelledError:
            exchange.outcome.fail("client_disconnect", "cancelled", "the client went away")
            raise
        finally:
            exchange.finish(response)

    async def _read_body(self, request: web.Request, exchange: Exchange) -> None:
        """Read the request body into the exchange, within the size and time limits; a body
        that breaks one is recorded as the exchange's failure."""
        settings, state = self._settings, exchange.outcome
        try:
            exchange.body = await read_body(
                request,
                max_bytes=settings.max_body_bytes,
                first_byte_timeout_s=settings.body_first_byte_timeout_s,
                read_timeout_s=settings.body_read_timeout_s,
            )
        except BodyTimeoutError as exc:
            state.fail("rejected", "body_timeout", str(exc))
        except web.HTTPRequestEntityTooLarge:
            state.fail("rejected", "body_too_large", "request body exceeds the size limit")
        except ConnectionResetError:
            # The client went away mid-upload: still one exchange with a terminal event.
            state.fail("client_disconnect", "client_reset", "the client left mid-body")

    def _captured(
        self,
        request: web.Request,
        endpoint: Endpoint,
        exchange: Exchange,
        raw_headers: list[tuple[str, str]],
        model: str | None,
        stream: bool,
        routed: Route | None,
    ) -> capture.CapturedRequest:
        """What the request event will say, every credential but the body's fingerprinted."""
        headers, client_key_fp = self._fingerprinter.headers(raw_headers)
        peer_ip = request.remote or ""
        forwarded_for = request.headers.get("X-Forwarded-For")
        redactor = exchange.redactor
        too_large = exchange.outcome.error_type == "body_too_large"
        return capture.CapturedRequest(
            request_id=exchange.id,
            received_at_us=exchange.received_at_us,
            method=request.method,
            path=redactor.text(request.path),
            query=self._fingerprinter.query(request.rel_url.raw_query_string),
            headers=headers,
            peer_ip=peer_ip,
            forwarded_for=forwarded_for,
            client_ip=resolve_client_ip(peer_ip, forwarded_for, self._settings.trusted_proxies),
            client_key_fingerprint=client_key_fp,
            body=exchange.body,
            max_body_in_event=self._recorder.max_event_payload,
            model_requested=model,
            stream=stream,
            endpoint=endpoint.path,
            dialect=endpoint.dialect,
            provider=routed.provider.name if routed else "",
            upstream_url=redactor.text(exchange.sent_url),
            model_sent=routed.model_sent if routed else None,
            proxy_instance=_INSTANCE,
            refused_size=request.content_length or 0 if too_large else None,
        )

    def _answer_here(
        self,
        exchange: Exchange,
        rejection: Rejection | None,
        route: Route | NoRoute | None,
    ) -> web.Response:
        """The answer to an exchange the proxy does not forward: a refusal, or a list of models."""
        state = exchange.outcome
        if rejection is not None:
            response = exchange.error(rejection.status, rejection.error_type, rejection.message)
            response.headers.update(rejection.headers)
            if rejection.close:
                response.force_close()
        elif state.error_type == "body_timeout":
            # The connection goes too: its request is unfinished (proxy/protocol.py closes it at
            # once instead of waiting for the rest of the body).
            response = exchange.error(408, "invalid_request_error", state.error_message or "")
            response.force_close()
        elif state.error_type == "client_reset":
            response = exchange.error(400, "invalid_request_error", "Incomplete request body.")
        elif state.error_type == "body_too_large":
            limit = self._settings.max_body_bytes
            response = exchange.error(
                413,
                "request_too_large",
                f"Request body is larger than {limit} bytes; send a smaller request.",
            )
        elif isinstance(route, NoRoute):
            state.fail("rejected", "unknown_model", route.message)
            kind = "not_found_error" if exchange.dialect == "anthropic" else "invalid_request_error"
            response = exchange.error(404, kind, route.message, code="model_not_found")
        else:  # an endpoint the proxy answers itself
            response = self._models(exchange)
        return response

    def _models(self, exchange: Exchange) -> web.Response:
        """GET /v1/models, answered by the proxy itself and captured like any other exchange."""
        body, state = self._models_body, exchange.outcome
        state.ttfb_ns = exchange.since_start_ns()
        state.chunks, state.bytes_out = 1, len(body)
        exchange.chunk(state.ttfb_ns, body, delivered=True, redact=False)
        return web.Response(
            body=body, content_type="application/json", headers={REQUEST_ID_HEADER: exchange.id}
        )
