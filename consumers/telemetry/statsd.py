"""The only module that talks DogStatsD: sends metric points over UDP with the maintained client.

DogStatsD is fire-and-forget by design (UDP, no acknowledgement): a point sent while no agent
listens is lost, and that is the accepted trade for never slowing the services down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from datadog.dogstatsd.base import DogStatsd

from consumers.telemetry.metrics import Kind, Point, consumer_batch_points, consumer_lag_points

log = logging.getLogger(__name__)

DEFAULT_PORT = 8125


class StatsdEmitter:
    def __init__(self, *, host: str, port: int = DEFAULT_PORT) -> None:
        self.address = f"{host}:{port}"
        # env/service/version tags come from DD_ENV, DD_SERVICE, DD_VERSION (the client reads
        # them). Unbuffered and without the client's own telemetry: one datagram per point,
        # sent now, so a crash loses nothing already "sent" and tests see exactly our lines.
        # With no agent listening every datagram fails; the forwarder says so once at start-up.
        logging.getLogger("datadog.dogstatsd").setLevel(logging.ERROR)
        self._client = DogStatsd(
            host=host,
            port=port,
            disable_telemetry=True,
            disable_buffering=True,
            origin_detection_enabled=False,
        )

    def emit(self, points: Iterable[Point]) -> None:
        for p in points:
            tags = list(p.tags)
            if p.kind is Kind.COUNT:
                self._client.increment(p.name, p.value, tags=tags)
            elif p.kind is Kind.GAUGE:
                self._client.gauge(p.name, p.value, tags=tags)
            else:
                self._client.distribution(p.name, p.value, tags=tags)

    def close(self) -> None:
        self._client.flush()
        self._client.close_socket()


class StatsdRunnerMetrics:
    """The runner's metrics hook, sent over DogStatsD."""

    def __init__(self, emitter: StatsdEmitter) -> None:
        self._emitter = emitter

    def batch(
        self, *, consumer: str, records: int, write_ms: float, retries: int, deadlettered: int
    ) -> None:
        self._emitter.emit(
            consumer_batch_points(
                consumer=consumer,
                records=records,
                write_ms=write_ms,
                retries=retries,
                deadlettered=deadlettered,
            )
        )

    def lag(self, *, consumer: str, lag_by_partition: dict[int, int]) -> None:
        self._emitter.emit(
            consumer_lag_points(consumer=consumer, lag_by_partition=lag_by_partition)
        )
