"""The ClickHouse loader service: runner + ClickHouse sink (+ the SQL endpoint when embedded)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from consumers.clickhouse.analyst import AnalystEngine
from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import SchemaRefusedError
from consumers.clickhouse.sink import ClickHouseSink
from consumers.clickhouse.sqlservice import serve_sql
from consumers.cyclegc import collect_garbage_less
from consumers.runner import Runner
from consumers.settings import LoaderSettings, embedded_path, is_embedded
from consumers.telemetry.statsd import StatsdEmitter, StatsdRunnerMetrics
from consumers.telemetry.tracing import ConsumerTracing

log = logging.getLogger(__name__)


async def run_loader(
    settings: LoaderSettings,
    *,
    serve_sql_endpoint: bool | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Load until ``stop`` is set (by default: SIGINT/SIGTERM), then finish the batch in hand,
    commit, and return."""
    metrics = None
    if settings.datadog is not None:
        emitter = StatsdEmitter(
            host=settings.datadog.agent_host, port=settings.datadog.dogstatsd_port
        )
        metrics = StatsdRunnerMetrics(emitter)
    runner = Runner(
        settings=settings.consumer,
        sink=ClickHouseSink(ClickHouse(settings.clickhouse_url)),
        metrics=metrics,
        tracing=ConsumerTracing(service="logorhythms-clickhouse") if settings.tracing else None,
    )
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    serve = is_embedded(settings.clickhouse_url)
    if serve_sql_endpoint is not None:
        serve = serve_sql_endpoint
    async with contextlib.AsyncExitStack() as stack:
        if serve:
            # Analysts query through read-only sessions of their own (never the writer's), and
            # can do so even while Kafka is unreachable.
            engine = AnalystEngine(str(embedded_path(settings.clickhouse_url)), settings.sql.limits)
            sql = contextlib.asynccontextmanager(serve_sql)
            await stack.enter_async_context(sql(engine, settings.sql))
        run = asyncio.create_task(runner.run(), name="clickhouse-loader")
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([run, stopped], return_when=asyncio.FIRST_COMPLETED)
        runner.request_stop()
        stopped.cancel()
        await run


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    collect_garbage_less()
    try:
        asyncio.run(run_loader(LoaderSettings.from_env()))
    except SchemaRefusedError as exc:
        # Not a crash: an operator decision (upgrade the loader or the server, migrate the
        # cluster). Say so in one line, without a traceback. A SettingsError goes up to the
        # command, which reports every service's configuration errors the same way (one line,
        # exit 2).
        raise SystemExit(f"logorhythms loader refuses to start: {exc}") from None
