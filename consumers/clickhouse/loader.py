"""The ClickHouse loader service: runner + ClickHouse sink (+ the SQL endpoint when embedded)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from consumers.clickhouse.client import ClickHouse, is_embedded
from consumers.clickhouse.sink import ClickHouseSink
from consumers.clickhouse.sqlservice import serve_sql
from consumers.runner import Runner
from consumers.settings import LoaderSettings

log = logging.getLogger(__name__)


async def run_loader(settings: LoaderSettings, *, serve_sql_endpoint: bool | None = None) -> None:
    """Load until SIGINT/SIGTERM; then finish the batch in hand, commit, and stop."""
    clickhouse = ClickHouse(settings.clickhouse_url)
    runner = Runner(settings=settings.consumer, sink=ClickHouseSink(clickhouse))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.request_stop)
    serve = is_embedded(settings.clickhouse_url)
    if serve_sql_endpoint is not None:
        serve = serve_sql_endpoint
    async with contextlib.AsyncExitStack() as stack:
        await clickhouse.start()
        stack.push_async_callback(clickhouse.stop)
        if serve:
            # Analysts can query even while Kafka is unreachable.
            sql = contextlib.asynccontextmanager(serve_sql)
            await stack.enter_async_context(sql(clickhouse, settings.sql_host, settings.sql_port))
        await runner.run()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_loader(LoaderSettings.from_env()))
