"""Analysts' queries on the embedded engine: the only module that calls chdb directly.

Every request gets its own chdb connection, which is its own ClickHouse session: limits and the
request's allowed settings are set first, then ``readonly=1``, which nothing in that session can
lift. Nothing an analyst does outlives the request or is seen by another. The writer (the
loader's clickhouse-connect client) has its own connection; neither a slow reader nor a long
query holds anything the writer needs (tests/integration/security/test_sql_endpoint_attacks.py
keeps the loader inserting throughout).

Before a query runs it is parsed by the engine itself, on a separate permanently read-only
parser session: ``formatQuery`` (bound as a query parameter, so the text cannot escape; it
refuses multi-statements) gives the canonical single statement, ``EXPLAIN AST`` of that gives the
tree that ``sqlpolicy`` judges, and the canonical text is what runs, so what was checked is what
executes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import chdb

from consumers.clickhouse import sqlhttp
from consumers.clickhouse.sqlpolicy import Policy, check, parse_dump
from consumers.settings import SqlLimits

log = logging.getLogger(__name__)
_connect: Callable[[str], Any] = chdb.connect  # chdb ships no type hints
# The engine ends a syntax error with the statement that failed, here the parse check wrapped
# around the analyst's text: the analyst is told about their query, not about ours.
_WRAPPED = re.compile(r": In scope SELECT formatQuery\('.*'\)\.(?= \([A-Z_]+\)$)", re.DOTALL)
T = TypeVar("T")

# Formats whose per-block outputs concatenate into one valid stream (no global header or
# footer). Other formats are produced in one piece, under a smaller result-size cap.
STREAMABLE_FORMATS = frozenset(
    {
        "Native",
        "TabSeparated",
        "TSV",
        "TabSeparatedRaw",
        "TSVRaw",
        "CSV",
        "RowBinary",
        "JSONEachRow",
        "JSONLines",
        "NDJSON",
        "JSONCompactEachRow",
        "JSONStringsEachRow",
        "LineAsString",
    }
)


class EngineError(Exception):
    """The engine refused or failed a query; ``text`` is ClickHouse's own exception text."""

    retriable = False

    def __init__(self, text: str) -> None:
        code, name, shaped = sqlhttp.engine_exception(text)
        super().__init__(shaped)
        self.code = code
        self.name = name
        self.text = shaped


@dataclass(slots=True)
class Progress:
    """What a query has read and returned so far, for ``X-ClickHouse-Summary``.

    chdb reports per result (or per streamed chunk): ``storage_rows_read``/``storage_bytes_read``
    are what the server calls read_rows/read_bytes; its ``rows_read``/``bytes_read`` are the
    rows and bytes of the result itself.
    """

    read_rows: int = 0
    read_bytes: int = 0
    result_rows: int = 0
    result_bytes: int = 0
    started_ns: int = field(default_factory=time.monotonic_ns)

    def add(self, result: Any) -> None:
        self.read_rows += int(result.storage_rows_read())
        self.read_bytes += int(result.storage_bytes_read())
        self.result_rows += int(result.rows_read())
        self.result_bytes += int(result.bytes_read())

    def summary(self) -> dict[str, str]:
        """The server's summary fields; values are strings there too (64-bit safe JSON)."""
        return {
            "read_rows": str(self.read_rows),
            "read_bytes": str(self.read_bytes),
            "written_rows": "0",
            "written_bytes": "0",
            "total_rows_to_read": "0",
            "result_rows": str(self.result_rows),
            "result_bytes": str(self.result_bytes),
            "elapsed_ns": str(time.monotonic_ns() - self.started_ns),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    sql: str
    output_format: str
    streamed: bool


class AnalystQuery:
    """One running query: its own session, on its own thread, read chunk by chunk."""

    def __init__(self, executor: ThreadPoolExecutor, release: Callable[[], None]) -> None:
        self._executor = executor
        self._release = release
        self._conn: Any = None
        self._stream: Any = None
        self._buffered: bytes | None = None
        self._closed = False
        self.progress = Progress()

    async def _call(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _open(
        self, path: str, statements: list[str], prepared: Prepared, params: dict[str, str]
    ) -> None:
        self._conn = _connect(path)
        try:
            for statement in statements:
                self._conn.query(statement, "TSV")
            if prepared.streamed:
                self._stream = self._conn.send_query(
                    prepared.sql, prepared.output_format, params=params
                )
            else:
                result = self._conn.query(prepared.sql, prepared.output_format, params=params)
                self.progress.add(result)
                self._buffered = result.bytes() or b""
        except Exception as exc:
            raise EngineError(str(exc)) from None

    def _fetch(self) -> bytes | None:
        if self._buffered is not None:
            whole, self._buffered = self._buffered, b""
            return whole or None
        if self._stream is None:
            return None
        try:
            while True:
                chunk = self._stream.fetch()
                if chunk is None:
                    return None
                self.progress.add(chunk)
                data: bytes = chunk.bytes()
                if data:
                    return data
        except Exception as exc:
            raise EngineError(str(exc)) from None

    async def next_chunk(self) -> bytes | None:
        """The next piece of output, or None at the end; EngineError if the query fails."""
        return await self._call(self._fetch)

    def _shutdown(self) -> None:
        stream, self._stream = self._stream, None
        conn, self._conn = self._conn, None
        for closer in (getattr(stream, "close", None), getattr(conn, "close", None)):
            if closer is None:
                continue
            try:
                closer()
            except Exception:  # a cancelled or failed stream may refuse to close twice
                log.debug("closing an analyst session failed", exc_info=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._call(self._shutdown)
        finally:
            self._executor.shutdown(wait=False)
            self._release()


class AnalystEngine:
    def __init__(self, path: str, limits: SqlLimits) -> None:
        self.path = path
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.max_concurrent_queries)
        self._parser_executor: ThreadPoolExecutor | None = None
        self._parser: Any = None
        self._policy: Policy | None = None
        self._parse_lock = threading.Lock()

    async def start(self) -> None:
        if self._parser_executor is not None:
            return
        self._parser_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sql-parse")
        self._policy = await self._parse_call(self._open_parser)

    def _open_parser(self) -> Policy:
        self._parser = _connect(self.path)
        # The parser session only parses, but it is read-only and short-lived per query as well.
        self._parser.query("SET max_execution_time = 5", "TSV")
        self._parser.query("SET readonly = 1", "TSV")
        table_functions = set(self._lines("SELECT name FROM system.table_functions"))
        by_category: dict[str, set[str]] = {}
        for line in self._lines("SELECT categories, name FROM system.functions"):
            category, _, name = line.partition("\t")
            by_category.setdefault(category, set()).add(name)
        setting_types = dict(
            line.split("\t", 1) for line in self._lines("SELECT name, type FROM system.settings")
        )
        return Policy.from_engine(
            table_functions=table_functions,
            functions_by_category=by_category,
            databases=set(self._lines("SELECT name FROM system.databases")),
            setting_types=setting_types,
        )

    def _lines(self, sql: str) -> list[str]:
        data: bytes = self._parser.query(sql, "TSVRaw").bytes()
        return [line for line in data.decode().split("\n") if line]

    @property
    def setting_types(self) -> Mapping[str, str]:
        """Every setting the engine knows, with its type (empty before ``start``)."""
        return self._policy.setting_types if self._policy is not None else {}

    async def stop(self) -> None:
        executor, self._parser_executor = self._parser_executor, None
        if executor is None:
            return
        parser, self._parser = self._parser, None
        if parser is not None:
            await asyncio.get_running_loop().run_in_executor(executor, parser.close)
        executor.shutdown(wait=True)

    async def _parse_call(self, call: Callable[[], T]) -> T:
        if self._parser_executor is None:
            raise EngineError(
                "Code: 210. DB::Exception: the SQL engine is not running. (NETWORK_ERROR)"
            )
        return await asyncio.get_running_loop().run_in_executor(self._parser_executor, call)

    def _parse(self, sql: str, params: dict[str, str]) -> tuple[str, str]:
        try:
            formatted: bytes = self._parser.query(
                "SELECT formatQuery({q:String})", "TSVRaw", params={"q": _escape(sql)}
            ).bytes()
            canonical = formatted.decode().removesuffix("\n")
            # With the request's parameters bound, so the tree judged is the one that runs
            # ({t:Identifier} becomes the table it names).
            dump: bytes = self._parser.query(
                f"EXPLAIN AST {canonical}", "TSVRaw", params=params
            ).bytes()
        except Exception as exc:
            raise EngineError(_WRAPPED.sub(".", str(exc))) from None
        return canonical, dump.decode()

    async def prepare(self, request: sqlhttp.QueryRequest) -> Prepared:
        """Parse and judge a query; QueryRefusedError or EngineError if it may not run."""
        if self._policy is None:
            raise EngineError(
                "Code: 210. DB::Exception: the SQL engine is not running. (NETWORK_ERROR)"
            )
        self._policy.check_database(request.database)
        canonical, dump = await self._parse_call(lambda: self._parse(request.sql, request.params))
        verdict = check(parse_dump(dump), self._policy)
        fmt = verdict.output_format or request.default_format
        streamed = verdict.statement == "SelectWithUnionQuery" and fmt in STREAMABLE_FORMATS
        return Prepared(sql=canonical, output_format=fmt, streamed=streamed)

    async def open(
        self, request: sqlhttp.QueryRequest, prepared: Prepared, settings: dict[str, str]
    ) -> AnalystQuery:
        """Start a prepared query in a session of its own; the caller reads and closes it."""
        try:
            await asyncio.wait_for(self._slots.acquire(), self.limits.queue_timeout_s)
        except TimeoutError:
            raise EngineError(
                f"Code: 202. DB::Exception: Too many simultaneous queries. Maximum: "
                f"{self.limits.max_concurrent_queries}. (TOO_MANY_SIMULTANEOUS_QUERIES)"
            ) from None
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sql-query")
        query = AnalystQuery(executor, self._slots.release)
        statements = self._session_statements(request, prepared, settings)
        try:
            await query._call(lambda: query._open(self.path, statements, prepared, request.params))
        except BaseException:
            await query.close()
            raise
        return query

    def _session_statements(
        self, request: sqlhttp.QueryRequest, prepared: Prepared, settings: dict[str, str]
    ) -> list[str]:
        limits = self.limits
        result_bytes = limits.max_result_bytes
        if not prepared.streamed:
            result_bytes = min(result_bytes, limits.max_buffered_result_bytes)
        values: dict[str, str] = {
            "max_execution_time": str(limits.max_execution_time_s),
            "max_memory_usage": str(limits.max_memory_usage_bytes),
            "max_result_rows": str(limits.max_result_rows),
            "max_result_bytes": str(result_bytes),
            "result_overflow_mode": "throw",
            "timeout_overflow_mode": "throw",
        }
        for name, value in settings.items():
            if name in values and name != "result_overflow_mode":
                values[name] = str(min(int(value), int(values[name])))
            else:
                values[name] = value
        statements = [f"SET {name} = {_quote(value)}" for name, value in values.items()]
        if request.database:
            statements.append(f"USE `{request.database}`")
        # Last: from here on the chdb session cannot change a setting, create anything, or write.
        statements.append("SET readonly = 1")
        return statements

    async def healthy(self, timeout_s: float) -> bool:
        """True if a fresh session answers within ``timeout_s`` (the engine is not wedged)."""

        def probe() -> bool:
            conn = _connect(self.path)
            try:
                return bool(conn.query("SELECT 1", "TSV").bytes().strip() == b"1")
            finally:
                conn.close()

        loop = asyncio.get_running_loop()
        # A thread of its own: a wedged engine may never return, and must not hold a shared one.
        future = loop.run_in_executor(None, probe)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except (TimeoutError, Exception):
            return False


def _escape(value: str) -> str:
    """A query parameter's value in ClickHouse's escaped text form (as the HTTP param_x takes)."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"
