"""The Datadog forwarder service: runner + Datadog sink, in its own consumer group."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from consumers.datadog.llmobs import LLMObsExporter
from consumers.datadog.sink import DatadogSink
from consumers.runner import Runner
from consumers.settings import ForwarderSettings
from consumers.sink import SinkError
from consumers.telemetry.statsd import StatsdEmitter, StatsdRunnerMetrics

log = logging.getLogger(__name__)


def _say_if_agent_unreachable(host: str, port: int) -> None:
    """One line at start-up, so a missing agent is obvious; the forwarder runs on regardless
    and holds its offsets until the agent takes spans."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        log.warning(
            "no Datadog agent reachable at %s:%d (%s): metrics are dropped and spans wait "
            "(Kafka offsets held) until one is",
            host,
            port,
            exc.strerror or exc,
        )


async def run_forwarder(
    settings: ForwarderSettings, *, trace_agent: tuple[str, int] | None = None
) -> None:
    """Forward until SIGINT/SIGTERM; then finish the batch in hand, commit, and stop."""
    dd = settings.datadog
    if trace_agent is not None:
        await asyncio.to_thread(_say_if_agent_unreachable, *trace_agent)
    emitter = StatsdEmitter(host=dd.agent_host, port=dd.dogstatsd_port)
    sink = DatadogSink(
        exporter=LLMObsExporter(ml_app=settings.ml_app, service=f"{dd.service}-datadog"),
        metrics=emitter,
        open_max_age_s=settings.open_max_age_s,
    )
    runner = Runner(settings=settings.consumer, sink=sink, metrics=StatsdRunnerMetrics(emitter))
    stopping = asyncio.Event()

    def request_stop() -> None:
        stopping.set()
        runner.request_stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    try:
        await runner.run()
    except SinkError as exc:
        if not stopping.is_set():
            raise
        # Asked to stop while Datadog was not taking spans: nothing of the batch in hand was
        # committed, so the next start forwards it. Not an error.
        log.warning(
            "stopped before Datadog took the last batch (%s); it is forwarded next time", exc
        )
    finally:
        emitter.close()
        log.info(
            "Datadog forwarder stopped: %d exchanges forwarded, %d skipped as already forwarded",
            sink.stats.forwarded,
            sink.stats.skipped_already_forwarded,
        )
