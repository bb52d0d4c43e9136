"""The only module that imports clickhouse-connect: an async adapter with typed errors.

clickhouse-connect is synchronous, and an embedded chdb session must not be used from two threads
at once, so every call runs on one dedicated worker thread, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from consumers.settings import embedded_path, is_embedded, normalize_clickhouse_url

log = logging.getLogger(__name__)
T = TypeVar("T")

# Server error codes that mean "this data can never be inserted", not "try again later".
_DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        70,  # CANNOT_CONVERT_TYPE
        117,  # INCORRECT_DATA
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        407,  # DECIMAL_OVERFLOW
        469,  # VIOLATED_CONSTRAINT (a CHECK constraint of the table refuses the row)
    }
)
_OWN_FORMAT = re.compile(r"\bFORMAT\s+[A-Za-z][A-Za-z0-9]*\s*$", re.IGNORECASE)


class ClickHouseError(Exception):
    """A ClickHouse call failed. ``retriable`` is False only for data ClickHouse will never take."""

    def __init__(self, message: str, *, retriable: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.code = code


class ClickHouse:
    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = normalize_clickhouse_url(url)
        self.read_only = read_only
        self._executor: ThreadPoolExecutor | None = None
        self._client: Client | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        if is_embedded(self.url):
            embedded_path(self.url).mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._client = await self._run(lambda: clickhouse_connect.get_client(dsn=self.url))
        if self.read_only:
            # ClickHouse keeps `readonly` for the rest of the session once a query sets it, and
            # a read-only session cannot lift it: this connection can never write. That is why
            # the loader's writer and the analysts' reader must be separate adapters.
            await self.raw("SELECT 1", fmt="TSV", readonly=True)

    async def stop(self) -> None:
        if self._executor is None:
            return
        client, self._client = self._client, None
        if client is not None:
            await self._run(client.close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def __aenter__(self) -> ClickHouse:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self, call: Callable[[], T]) -> T:
        if self._executor is None:
            raise ClickHouseError("ClickHouse adapter is not started", retriable=False)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except DriverError as exc:
            raise _translate(exc) from exc

    @property
    def _c(self) -> Client:
        if self._client is None:
            raise ClickHouseError("ClickHouse adapter is not started", retriable=False)
        return self._client

    async def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        columns: Sequence[str],
        *,
        dedup_token: str,
        column_oriented: bool = False,
    ) -> None:
        """Insert rows (or, ``column_oriented``, one sequence per column); a retry with the same
        token is a no-op on the server."""
        client = self._c
        await self._run(
            lambda: client.insert(
                table,
                data,
                column_names=list(columns),
                column_oriented=column_oriented,
                settings={
                    "insert_deduplication_token": dedup_token,
                    "insert_deduplicate": 1,
                    "deduplicate_blocks_in_dependent_materialized_views": 1,
                },
            )
        )

    async def insert_arrow(self, table: str, data: Any, *, dedup_token: str) -> None:
        """Insert a pyarrow Table (columns by name): large arrays stay Arrow buffers, never a
        Python object per value; a retry with the same token is a no-op on the server."""
        client = self._c
        await self._run(
            lambda: client.insert_arrow(
                table,
                data,
                settings={"insert_deduplication_token": dedup_token, "insert_deduplicate": 1},
            )
        )

    async def release_memory(self) -> None:
        """Hand the embedded engine's freed memory back to the system now. Its allocator keeps
        freed pages for seconds, so a process reading query after query holds ~150 MB more than
        it uses; a server's memory is not this process's, and is left alone."""
        if not is_embedded(self.url):
            return
        client = self._c
        with contextlib.suppress(ClickHouseError):  # an engine built without jemalloc: no purge
            await self._run(lambda: client.command("SYSTEM JEMALLOC PURGE"))

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        client = self._c
        await self._run(lambda: client.command(sql, parameters=parameters))

    async def rows(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        *,
        binary_columns: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """Query rows; ``binary_columns`` come back as bytes, exactly as stored."""
        client = self._c
        formats: dict[str, str | dict[str, str]] = dict.fromkeys(binary_columns, "bytes")
        result = await self._run(
            lambda: client.query(sql, parameters=parameters, column_formats=formats)
        )
        return [tuple(row) for row in result.result_rows]

    async def raw(self, sql: str, *, fmt: str, readonly: bool = True) -> bytes:
        """Run a query and return its output in a ClickHouse format (CSV, PrettyCompact, ...).

        A query that names its own format (``... FORMAT CSV``) keeps it.
        """
        client = self._c
        settings = {"readonly": 2} if readonly else {}
        sql = sql.strip().rstrip(";")
        chosen = None if _OWN_FORMAT.search(sql) else fmt
        return await self._run(lambda: client.raw_query(sql, fmt=chosen, settings=settings))

    async def query_to_file(
        self,
        sql: str,
        path: Path,
        *,
        fmt: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> int:
        """Write a query's output in a ClickHouse format (Parquet, ...) to ``path``; its size."""
        client = self._c

        def write() -> int:
            written = 0
            stream = client.raw_stream(sql, parameters=parameters, settings=settings, fmt=fmt)
            with path.open("wb") as out:
                for block in stream:
                    out.write(block)
                    written += len(block)
            return written

        return await self._run(write)

    async def insert_file(
        self, table: str, path: Path, *, fmt: str, dedup_token: str, columns: Sequence[str] = ()
    ) -> None:
        """Insert a file in a ClickHouse input format; a retry with the same token is a no-op."""
        client = self._c

        def insert() -> None:
            with path.open("rb") as data:
                client.raw_insert(
                    table,
                    list(columns) or None,
                    insert_block=data,
                    fmt=fmt,
                    settings={
                        "insert_deduplication_token": dedup_token,
                        "insert_deduplicate": 1,
                        "deduplicate_blocks_in_dependent_materialized_views": 1,
                    },
                )

        await self._run(insert)

    async def arrow_batches(
        self,
        sql: str,
        on_batch: Callable[[Any], None],
        *,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Stream a query as pyarrow RecordBatches, each handed to ``on_batch`` on the adapter's
        thread: memory holds one batch at a time. Strings stay bytes unless ``settings`` ask for
        ``output_format_arrow_string_as_string``."""
        client = self._c

        def stream() -> None:
            with client.query_arrow_stream(
                sql, parameters=parameters, settings=settings
            ) as batches:
                for batch in batches:
                    on_batch(batch)

        await self._run(stream)


def _translate(exc: DriverError) -> ClickHouseError:
    code = getattr(exc, "code", None)
    if isinstance(exc, OperationalError):
        return ClickHouseError(f"ClickHouse unavailable: {exc}", retriable=True, code=code)
    if isinstance(exc, DatabaseError) and code in _DATA_ERROR_CODES:
        return ClickHouseError(f"ClickHouse rejected the data: {exc}", retriable=False, code=code)
    # Everything else (READONLY and other permission errors, missing columns, too many parts,
    # ...) is a sink-side problem an operator can fix: retry rather than throw events away.
    return ClickHouseError(f"ClickHouse error: {exc}", retriable=True, code=code)
