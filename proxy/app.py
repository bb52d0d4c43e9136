"""The aiohttp application: routes, and resources as cleanup contexts.

Cleanup contexts unwind in reverse order *after* in-flight handlers have finished, so the Kafka
producer is flushed and closed only once the last exchange has published its completed event.
Shutdown (SIGTERM): readiness turns "draining", the listener closes, in-flight exchanges get
``shutdown_timeout_s`` to finish, then the publisher gets ``publish_shutdown_timeout_s`` to hand
everything to Kafka; what Kafka did not acknowledge by then is fsynced in the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from proxy import telemetry
from proxy.errors import openai_error_body
from proxy.eventloop import new_event_loop
from proxy.forward import ExchangeHandler
from proxy.framing import event_codec
from proxy.guard import HTTP_SERVER_LOG, Guard, Rejection
from proxy.journal_ownership import adoption_context, journal_dir, orphaned_journals, publisher_for
from proxy.looplag import LoopLagMonitor
from proxy.protocol import ApiAppRunner, dialect_of, not_a_forward_proxy
from proxy.publisher import Publisher
from proxy.routing import Endpoint, Router
from proxy.settings import ProxySettings
from proxy.upstream import create_session

log = logging.getLogger(__name__)

# Each endpoint streams when the request asks it to; all are captured alike.
ENDPOINTS = (
    Endpoint("/v1/chat/completions", "openai"),
    Endpoint("/v1/completions", "openai"),
    Endpoint("/v1/embeddings", "openai"),
    Endpoint("/v1/responses", "openai"),
    Endpoint("/v1/messages", "anthropic"),
    Endpoint("/v1/messages/count_tokens", "anthropic"),
)
MODELS = Endpoint("/v1/models", "openai", kind="models")
# Any other /v1 path (files, batches, stored responses, ...) goes to the dialect's default
# provider as it is. Anthropic clients always send anthropic-version, which tells them apart.
PASSTHROUGH = {
    "openai": Endpoint("/v1/{tail}", "openai"),
    "anthropic": Endpoint("/v1/{tail}", "anthropic"),
}
# A path outside /v1 from an Anthropic client (say, the Vercel AI SDK's createAnthropic with a
# base URL lacking /v1): refused in Anthropic's shape, and captured, so the mistake is visible.
OUTSIDE_V1 = Endpoint("/{tail}", "anthropic")
# Anthropic's SDKs send both; OpenAI's send neither.
ANTHROPIC_CLIENT_HEADERS = ("anthropic-version", "x-api-key")

SETTINGS = web.AppKey("settings", ProxySettings)
PUBLISHER = web.AppKey("publisher", Publisher)
EXCHANGE_HANDLER = web.AppKey("exchange_handler", ExchangeHandler)
GUARD = web.AppKey("guard", Guard)
DRAINING = web.AppKey("draining", list[bool])  # a one-element flag, set on shutdown
WORKER = web.AppKey("worker", int)  # this process's index among settings.workers (0-based)
LOOP_MONITOR = web.AppKey("loop_monitor", LoopLagMonitor)


def create_app(settings: ProxySettings, *, worker: int = 0) -> web.Application:
    """The proxy as worker ``worker`` of ``settings.workers`` (all of them share the port)."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        handler_args={
            # aiohttp arms this timer when a connection opens and after each response, and closes
            # the connection if no complete request head has arrived when it fires: this is the
            # header timeout against slowloris (and the idle keep-alive timeout).
            "keepalive_timeout": settings.header_timeout_s,
            "max_headers": settings.max_header_count,
            "max_field_size": settings.max_header_bytes,
            "max_line_size": settings.max_header_bytes,
            "logger": HTTP_SERVER_LOG,  # refused requests logged without their bytes
        },
    )
    app[SETTINGS] = settings
    app[GUARD] = Guard(settings)
    app[DRAINING] = [False]
    app[WORKER] = worker
    app[LOOP_MONITOR] = LoopLagMonitor(settings.loop_probe_interval_ms / 1000 or None)
    app.on_shutdown.append(_drain)
    app.cleanup_ctx.append(_loop_monitor_ctx)
    if settings.dogstatsd_host:
        # First in, last out: the final metrics tick comes after the publisher has drained at
        # shutdown, so it reports the drain too. (The callables are evaluated only when sent.)
        app.cleanup_ctx.append(
            telemetry.metrics_context(
                host=settings.dogstatsd_host,
                port=settings.dogstatsd_port,
                counters=lambda: _counters(app),
                publish_latencies_ms=lambda: app[PUBLISHER].drain_latency_samples(),
                loop_window=app[LOOP_MONITOR].take_window,
                interval_s=settings.metrics_interval_s,
                # Gauges from N processes would overwrite one another: each says which it is
                # (a bounded tag: at most one value per CPU).
                tags=[f"worker:{worker}"] if settings.workers > 1 else [],
            )
        )
    app.cleanup_ctx.append(_publisher_ctx)
    journals = orphaned_journals(settings) if worker == 0 else []
    if journals:
        app.cleanup_ctx.append(adoption_context(settings, journals))
    app.cleanup_ctx.append(_exchange_handler_ctx)
    if settings.tracing:
        telemetry.enable_tracing(app)
    for endpoint in ENDPOINTS:
        app.router.add_post(endpoint.path, _endpoint_handler(endpoint))
    app.router.add_get(MODELS.path, _models)
    app.router.add_route("*", r"/v1/{tail:[\s\S]*}", _passthrough)  # control chars too
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/statsz", _statsz)
    app.router.add_route("*", r"/{tail:[\s\S]*}", _not_found)
    return app


async def _loop_monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    # First in, last out: it watches the loop through start, serving and the drain at shutdown.
    app[LOOP_MONITOR].start()
    yield
    app[LOOP_MONITOR].stop()


async def _publisher_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    publisher = publisher_for(
        settings, journal_dir(settings, app[WORKER]), loop_monitor=app[LOOP_MONITOR]
    )
    await publisher.start()
    app[PUBLISHER] = publisher
    yield
    await publisher.stop()


async def _exchange_handler_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    codec = await event_codec(settings)
    async with create_session(settings) as session:
        app[EXCHANGE_HANDLER] = ExchangeHandler(
            settings=settings,
            session=session,
            publisher=app[PUBLISHER],
            codec=codec,
            router=Router(settings),
        )
        yield


def _endpoint_handler(
    endpoint: Endpoint,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _admitted(request, endpoint)

    handler.__name__ = f"forward_{endpoint.path.strip('/').replace('/', '_')}"
    return handler


async def _admitted(
    request: web.Request, endpoint: Endpoint, rejection: Rejection | None = None
) -> web.StreamResponse:
    """Forward one exchange if proxy.guard admits it (and no ``rejection`` is given); every route
    that reads a body or calls the upstream comes through here, so no path escapes the
    per-client and global caps."""
    guard = request.app[GUARD]
    client_ip = guard.client_ip(request)
    refusal = guard.enter(client_ip, endpoint)
    if refusal is not None:
        return refusal
    try:
        # A rejection is recorded and answered by the ExchangeHandler.
        return await request.app[EXCHANGE_HANDLER].handle(
            request, endpoint, guard.check(request, client_ip) or rejection
        )
    finally:
        guard.leave(client_ip)


def _dialect(request: web.Request) -> str:
    return "anthropic" if "anthropic-version" in request.headers else "openai"


async def _models(request: web.Request) -> web.StreamResponse:
    """OpenAI clients get the configured models; Anthropic's list comes from its provider.

    With no model configured anywhere (say OPENAI_BASE_URL alone), the provider's own list is
    the honest answer, so the request goes upstream like any other.
    """
    handler = request.app[EXCHANGE_HANDLER]
    if _dialect(request) == "anthropic" or not handler.lists_models:
        return await _passthrough(request)
    return await _admitted(request, MODELS)


async def _passthrough(request: web.Request) -> web.StreamResponse:
    # The path is checked by the ExchangeHandler (proxy.routing.upstream_path), so a refused one is
    # still captured, as a rejected exchange.
    dialect = _dialect(request)
    if request.path.startswith("/v1/v1/"):
        # No provider serves /v1/v1/: a base URL ending in /v1 given to an SDK that adds /v1 itself
        # (Anthropic's). The provider's bare 404 would not say so; this answer does.
        message = (
            f"The path {request.path} repeats /v1: the base URL ends in /v1 and the SDK adds /v1 "
            "again. Anthropic's SDKs take the proxy's address without /v1 (http://host:port); "
            "OpenAI's take it with /v1 once (see docs/CLIENTS.md)."
        )
        error_type = "not_found_error" if dialect == "anthropic" else "invalid_request_error"
        refusal = Rejection(
            status=404, error_type=error_type, reason="unknown_path", message=message
        )
        return await _admitted(request, PASSTHROUGH[dialect], refusal)
    return await _admitted(request, PASSTHROUGH[dialect])


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _drain(app: web.Application) -> None:
    app[DRAINING][0] = True
    log.info("shutting down: no new connections; finishing in-flight exchanges")


async def _readyz(request: web.Request) -> web.Response:
    """Ready, or degraded (Kafka away, events journaled: still serving, so still 200), or
    draining (shutting down: 503 so a balancer stops sending)."""
    publisher = request.app[PUBLISHER]
    if request.app[DRAINING][0]:
        status = "draining"
    else:
        status = "degraded" if publisher.degraded else "ready"
    return web.json_response(
        {
            "status": status,
            "kafka_connected": publisher.connected,
            "journal_healthy": publisher.journal.healthy,
        },
        status=503 if status == "draining" else 200,
    )


async def _statsz(request: web.Request) -> web.Response:
    publisher = request.app[PUBLISHER]
    stats, journal = publisher.stats, publisher.journal.stats
    body = {
        "worker": request.app[WORKER],  # the process that answered: /statsz is per process
        "served": request.app[EXCHANGE_HANDLER].served,
        "events_published": stats.published,
        "events_delivered": stats.delivered,
        "events_journaled": stats.journaled,
        "events_replayed": stats.replayed,
        "events_dropped": stats.dropped,
        # Exchanges that lost events, each named in the drop log (docs/OPERATIONS.md).
        "dropped_exchanges": stats.dropped_exchanges,
        "drop_log": str(publisher.drop_log.path),
        "exchanges_ended_proxy_died": stats.recovered,
        "events_in_memory": publisher.in_memory,
        "events_resent": stats.resent,
        "kafka_send_failures": stats.send_failures,
        "journal_spills": stats.spills,
        # LOGORHYTHMS_PRODUCER=process: how often its producer process had to be started again.
        "producer_restarts": stats.producer_restarts,
        "journal_bytes": publisher.journal.backlog_bytes,
        "journal_disk_bytes": publisher.journal.size_bytes,
        "journal_dropped_full": journal.dropped_full,
        "journal_dropped_io_error": journal.dropped_io_error,
        "journal_lost_buffered": journal.lost_buffered,
        "journal_corrupt_segments": journal.corrupt_segments,
        "journal_corrupt_bytes": journal.corrupt_bytes,
        "journal_fsyncs": journal.fsyncs,
        "degraded": publisher.degraded,
        "rejected_overload": request.app[GUARD].stats.rejected_overload,
        "rejected_client_cap": request.app[GUARD].stats.rejected_client_cap,
        "rejected_rate_limit": request.app[GUARD].stats.rejected_rate_limit,
        "rejected_invalid": request.app[GUARD].stats.rejected_invalid,
        "rejected_malformed": request.app[GUARD].stats.rejected_malformed,
        # Scheduling delay and the produce cycle's longest steps (proxy/looplag.py).
        "loop": request.app[LOOP_MONITOR].report(),
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _counters(app: web.Application) -> dict[str, int]:
    publisher = app[PUBLISHER]
    stats, journal = publisher.stats, publisher.journal
    return {
        "logorhythms.proxy.served": app[EXCHANGE_HANDLER].served,
        "logorhythms.proxy.publish.enqueued": stats.published,
        "logorhythms.proxy.publish.failed": stats.send_failures,
        "logorhythms.proxy.publish.dropped": stats.dropped,
        "logorhythms.proxy.publish.in_flight": publisher.in_memory,
        "logorhythms.proxy.publish.journaled": stats.journaled,
        "logorhythms.proxy.publish.replayed": stats.replayed,
        # Exact for what this process journaled; an earlier run's leftovers show in the bytes.
        "logorhythms.proxy.journal.depth_events": max(
            0, stats.journaled - stats.replayed - journal.stats.lost_buffered
        ),
        "logorhythms.proxy.journal.bytes": journal.backlog_bytes,
        "logorhythms.proxy.journal.degraded": int(publisher.degraded),
        "logorhythms.proxy.producer.restarts": stats.producer_restarts,
    }


async def _not_found(request: web.Request) -> web.StreamResponse:
    if not request.raw_path.startswith("/"):  # absolute-form: GET http://host/...
        return not_a_forward_proxy(dialect_of(request.path, "anthropic-version" in request.headers))
    if any(name in request.headers for name in ANTHROPIC_CLIENT_HEADERS):
        message = (
            f"Logorhythms does not serve {request.method} {request.path}. It serves the "
            "Anthropic API under /v1/ (POST /v1/messages): a client that appends only "
            "/messages needs a base URL ending in /v1 (see docs/CLIENTS.md)."
        )
        refusal = Rejection(
            status=404, error_type="not_found_error", reason="unknown_path", message=message
        )
        return await _admitted(request, OUTSIDE_V1, refusal)
    return web.Response(
        status=404,
        body=openai_error_body(
            f"Logorhythms does not serve {request.method} {request.path}. "
            "It serves the OpenAI and Anthropic APIs under /v1/ (see docs/CLIENTS.md).",
            error_type="invalid_request_error",
            code="unknown_url",
        ),
        content_type="application/json",
    )


def run(settings: ProxySettings) -> None:
    """Serve as the only proxy process (``workers = 1``); proxy/supervisor.py runs several."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(create_app(settings))


def tune_gc_for_serving() -> None:
    """Keep the cyclic garbage collector off the proxy's hot path (the loader tunes its own).

    Every exchange allocates a few thousand short-lived objects (requests, headers, event
    records), which reference counting frees; with the default thresholds the collector still ran
    every 700 allocations and walked every long-lived object (modules, the app, pools) at each
    full collection (docs/decisions/0009-gc-tuning.md). What exists when we start serving is frozen
    out of every collection, and the youngest generation is collected every 10,000 allocations
    instead; only reference cycles wait a little longer to be freed.
    """
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def make_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """The runner the proxy must be served with: its connections answer every error in the
    API's shape, even those aiohttp answers before a handler runs (proxy/protocol.py)."""
    return ApiAppRunner(app, stats=app[GUARD].stats, **kwargs)


def serve(
    app: web.Application,
    *,
    reuse_port: bool = False,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM: stop accepting, drain in-flight exchanges, flush Kafka.

    What ``web.run_app`` does, with our runner (which ``run_app`` cannot be given).
    """
    settings = app[SETTINGS]
    tune_gc_for_serving()
    loop = new_event_loop(settings.event_loop)
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, reuse_port=reuse_port, on_listening=on_listening))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass  # SIGTERM/SIGINT: the runner's cleanup below drains and flushes
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)
    handler = app.get(EXCHANGE_HANDLER)
    if handler is not None:
        log.info("proxy stopped after serving %d exchanges", handler.served)


async def _serve(
    app: web.Application, *, reuse_port: bool, on_listening: Callable[[], None] | None
) -> None:
    settings = app[SETTINGS]
    runner = make_runner(
        app,
        handle_signals=True,  # SIGINT/SIGTERM raise GracefulExit in serve()
        shutdown_timeout=settings.shutdown_timeout_s,
        access_log=None,
        handler_cancellation=False,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
        await site.start()
        log.info("proxy listening on http://%s:%d", settings.host, settings.port)
        if on_listening is not None:
            on_listening()
        await asyncio.Event().wait()  # until a signal ends the loop
    finally:
        await runner.cleanup()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    leftovers = asyncio.all_tasks(loop)
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
