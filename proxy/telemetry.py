"""Ops telemetry of the proxy, both optional and both off unless Datadog is configured:

- APM: ddtrace traces every request (its aiohttp server and client integrations), and the
  request's trace context rides in the Kafka headers of the request and completed events, so one
  trace spans proxy → Kafka → consumers. Chunk events carry none (they are the hot path).
- Metrics: every ``interval`` the proxy's own counters go to DogStatsD as deltas, giving the
  "served" side of the capture gap (served vs captured) and the publisher's health.

This is the only proxy module that imports ddtrace or the DogStatsD client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiohttp import web

from proxy.looplag import Window

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

# Metric names sent by the proxy (documented in docs/OPERATIONS.md, checked against deploy/datadog).
PROXY_METRICS = {
    "logorhythms.proxy.served": "count",
    "logorhythms.proxy.publish.enqueued": "count",
    "logorhythms.proxy.publish.failed": "count",
    "logorhythms.proxy.publish.dropped": "count",
    "logorhythms.proxy.publish.in_flight": "gauge",
    "logorhythms.proxy.publish.journaled": "count",
    "logorhythms.proxy.publish.replayed": "count",
    "logorhythms.proxy.journal.depth_events": "gauge",
    "logorhythms.proxy.journal.bytes": "gauge",
    "logorhythms.proxy.journal.degraded": "gauge",
    "logorhythms.proxy.producer.restarts": "count",
    "logorhythms.proxy.publish.latency_ms": "distribution",
    "logorhythms.proxy.loop.lag_max_ms": "gauge",
    "logorhythms.proxy.loop.lag_p99_ms": "gauge",
    "logorhythms.proxy.loop.section_max_ms": "gauge",
}
# Metrics named for dashboards but not sent yet (none at present).
RESERVED_PROXY_METRICS: dict[str, str] = {}

_inject: Callable[[], Headers | None] | None = None


def trace_headers() -> Headers | None:
    """Kafka headers carrying the current request's trace context, or None when not tracing."""
    return _inject() if _inject is not None else None


def enable_tracing(app: web.Application) -> None:
    """Trace the app's requests and upstream calls with ddtrace; call before the app starts."""
    global _inject
    from ddtrace import patch
    from ddtrace.contrib.aiohttp import trace_app
    from ddtrace.propagation.http import HTTPPropagator
    from ddtrace.trace import tracer

    patch(aiohttp=True)
    trace_app(app, service="logorhythms-proxy")  # type: ignore[no-untyped-call]

    def inject() -> Headers | None:
        span = tracer.current_span()
        if span is None:
            return None
        carrier: dict[str, str] = {}
        HTTPPropagator.inject(span.context, carrier)
        return [(name, value.encode("latin-1")) for name, value in carrier.items()]

    _inject = inject


def metrics_context(
    *,
    host: str,
    port: int,
    counters: Callable[[], dict[str, int]],
    publish_latencies_ms: Callable[[], list[float]] = list,
    loop_window: Callable[[], Window] | None = None,
    interval_s: float = 10.0,
    tags: Sequence[str] = (),
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context sending the proxy's counters (and the sampled publish-to-acknowledgement
    latencies, and the event loop's lag over each interval) to DogStatsD while the app runs."""
    from datadog.dogstatsd.base import DogStatsd

    last: dict[str, int] = {}

    async def send_forever(client: Any) -> None:
        while True:
            await asyncio.sleep(interval_s)
            send(client)

    def send(client: Any) -> None:
        for latency in publish_latencies_ms():
            client.distribution("logorhythms.proxy.publish.latency_ms", latency)
        for name, value in counters().items():
            if PROXY_METRICS[name] == "gauge":
                client.gauge(name, value)
            else:
                client.increment(name, value - last.get(name, 0))
                last[name] = value
        if loop_window is not None:
            window = loop_window()
            client.gauge("logorhythms.proxy.loop.lag_max_ms", window.lag_max_ms)
            client.gauge("logorhythms.proxy.loop.lag_p99_ms", window.lag_p99_ms)
            for section, longest_ms in window.section_max_ms.items():
                # A handful of fixed section names (proxy/publisher.py): a bounded tag.
                client.gauge(
                    "logorhythms.proxy.loop.section_max_ms", longest_ms, tags=[f"section:{section}"]
                )

    async def context(app: web.Application) -> AsyncIterator[None]:
        # With no agent listening every datagram fails: not worth a warning each time.
        logging.getLogger("datadog.dogstatsd").setLevel(logging.ERROR)
        client = DogStatsd(
            host=host,
            port=port,
            disable_telemetry=True,
            origin_detection_enabled=False,
            constant_tags=list(tags),
        )
        task = asyncio.create_task(send_forever(client), name="proxy-metrics")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        send(client)  # what happened since the last tick, e.g. the drain at shutdown
        client.flush()
        client.close_socket()

    return context
