"""S7: the analysts' SQL endpoint against a running loader with events flowing.

Every table function the engine lists, every scalar function with a file path and a URL, and the
named attacks of docs/OPERATIONS.md are tried. Each is refused in ClickHouse's shape (or is
harmless); a canary listener on loopback sees no connection; a canary file outside the data
directory is never read and a target path never written; and the loader keeps inserting.
"""

# ruff: noqa: S608 (the queries are the attacks; their text is built on purpose)

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from consumers.clickhouse.loader import run_loader
from consumers.clickhouse.sqlhttp import SAFE_STRING_SETTINGS
from consumers.settings import ConsumerSettings, LoaderSettings, SqlLimits, SqlSettings
from deploy.local.kafka import create_topic
from proxy import capture
from schemas import Codec
from tests.integration.security.scan import Canary
from tests.integration.test_loader_sql import _exchange_events, _free_port

CANARY = "CANARY-7f3a9c-secret-file-contents"


@dataclass
class Stack:
    url: str
    session: aiohttp.ClientSession
    canary: Canary
    canary_file: Path
    target: Path
    published: list[str] = field(default_factory=list)

    async def sql(self, query: str, **params: str) -> tuple[int, dict[str, str], str]:
        async with self.session.post(f"{self.url}/", data=query, params=params) as response:
            body = await response.text(errors="replace")
            return response.status, dict(response.headers), body

    async def loaded(self) -> int:
        ids = ",".join(f"'{i}'" for i in self.published) or "''"
        status, _, body = await self.sql(
            f"SELECT count() FROM exchanges FINAL WHERE request_id IN ({ids})"
        )
        if status == 404:  # the loader has not created its tables yet
            return 0
        assert status == 200, body
        return int(body)


async def _traffic(bootstrap: str, topic: str, published: list[str], stop: asyncio.Event) -> None:
    codec = Codec()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        while not stop.is_set():
            request_id = capture.new_request_id()
            for event_type, record in _exchange_events(request_id, "steady"):
                await producer.send_and_wait(
                    topic, codec.encode(event_type, record), key=request_id.encode()
                )
            published.append(request_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        await producer.stop()


@pytest.fixture
async def stack(
    kafka_bootstrap: str, unique_topic: str, clickhouse_url: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    await create_topic(kafka_bootstrap, unique_topic)
    port = _free_port()
    settings = LoaderSettings(
        consumer=ConsumerSettings(
            kafka_bootstrap_servers=kafka_bootstrap, topic=unique_topic,
            group_id=f"{unique_topic}-loader", deadletter_topic=f"{unique_topic}.dlq",
            batch_max_age_s=0.2,
        ),
        clickhouse_url=clickhouse_url,
        sql=SqlSettings(
            port=port,
            limits=SqlLimits(max_execution_time_s=3, max_memory_usage_bytes=300 * 1024**2),
        ),
    )  # fmt: skip
    canary_file = tmp_path / "canary.txt"
    canary_file.write_text(CANARY)
    stop_loader, stop_traffic = asyncio.Event(), asyncio.Event()
    loader = asyncio.create_task(run_loader(settings, stop=stop_loader))
    async with Canary() as canary, aiohttp.ClientSession() as session:
        stack = Stack(
            url=f"http://127.0.0.1:{port}", session=session, canary=canary,
            canary_file=canary_file, target=tmp_path / "written-by-attack.txt",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                async with session.get(f"{stack.url}/ping") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientConnectorError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)
        traffic = asyncio.create_task(
            _traffic(kafka_bootstrap, unique_topic, stack.published, stop_traffic)
        )
        try:
            await _wait_loaded(stack, at_least=1)
            yield stack
            stop_traffic.set()
            await traffic
            # Everything published while the attacks ran was loaded.
            await _wait_loaded(stack, at_least=len(stack.published))
        finally:
            stop_traffic.set()
            await asyncio.gather(traffic, return_exceptions=True)
            stop_loader.set()
            await asyncio.wait_for(loader, 30)
    assert canary.connections == 0
    assert not stack.target.exists()


async def _wait_loaded(stack: Stack, *, at_least: int) -> int:
    deadline = time.monotonic() + 30
    loaded = 0
    while time.monotonic() < deadline:
        loaded = await stack.loaded()
        if loaded >= at_least:
            return loaded
        await asyncio.sleep(0.1)
    raise AssertionError(f"the loader stopped loading: {loaded} of {at_least}")


def _assert_refused(status: int, headers: dict[str, str], body: str, *codes: int) -> None:
    assert status >= 400, body
    code = int(headers["X-ClickHouse-Exception-Code"])
    assert code in codes, body
    assert body.startswith(f"Code: {code}. DB::Exception: "), body
    assert CANARY not in body


async def test_every_table_function_is_refused_or_pure(stack: Stack) -> None:
    status, _, body = await stack.sql("SELECT name FROM system.table_functions ORDER BY name")
    assert status == 200, body
    names = body.split()
    assert len(names) > 50  # the engine's whole list, whatever a new version adds
    loaded_before = await stack.loaded()
    pure = {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries",
            "generateRandom", "primes", "values", "null", "format"}  # fmt: skip
    for name in names:
        for argument in (f"'{stack.canary_file}'", f"'http://127.0.0.1:{stack.canary.port}/x'"):
            status, headers, body = await stack.sql(f"SELECT * FROM {name}({argument}) LIMIT 1")
            assert CANARY not in body
            if name not in pure:
                # Refused by the policy, or (view, viewExplain: they take a subquery, not a
                # string) by the parser before anything ran.
                _assert_refused(status, headers, body, 497, 62)
                assert f"table function {name}()" in body or "(SYNTAX_ERROR)" in body
    # DESCRIBE infers a table function's schema, which would connect: refused the same way.
    status, headers, body = await stack.sql(
        f"DESCRIBE url('http://127.0.0.1:{stack.canary.port}/')"
    )
    _assert_refused(status, headers, body, 497)
    assert await _wait_loaded(stack, at_least=loaded_before + 1) > loaded_before


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_no_scalar_function_reads_a_file_or_calls_out(stack: Stack) -> None:
    status, _, body = await stack.sql(
        "SELECT name FROM system.functions WHERE NOT is_aggregate ORDER BY name"
    )
    assert status == 200, body
    names = body.split()
    assert len(names) > 500
    url = f"http://127.0.0.1:{stack.canary.port}/x"
    slots = asyncio.Semaphore(4)

    async def attempt(name: str) -> None:
        async with slots:
            for argument in (f"'{stack.canary_file}'", f"'{url}'"):
                _, _, body = await stack.sql(f"SELECT `{name}`({argument})")
                assert CANARY not in body, name

    await asyncio.gather(*(attempt(name) for name in names))
    status, headers, body = await stack.sql(f"SELECT file('{stack.canary_file}')")
    _assert_refused(status, headers, body, 497)


@pytest.mark.parametrize(
    ("attack", "codes"),
    [
        ("INSERT INTO FUNCTION file('{target}', 'LineAsString', 'l String') SELECT 'x'", (164,)),
        ("SELECT 'x' INTO OUTFILE '{target}'", (497,)),
        ("SELECT * FROM file('/proc/self/environ', 'RawBLOB', 'line String')", (497,)),
        ("SELECT file('{canary}')", (497,)),
        ("SELECT * FROM file('{canary}', 'RawBLOB')", (497,)),
        ("CREATE TEMPORARY TABLE exchanges ENGINE = Memory AS SELECT 1 AS x", (164,)),
        ("KILL QUERY WHERE query ILIKE '%INSERT%'", (164,)),
        ("SELECT count() FROM exchanges SETTINGS readonly = 0", (164,)),
        ("SELECT 1 SETTINGS readonly = 1, readonly = 0", (164,)),
        ("SET readonly = 0", (164,)),
        ("SET output_format_json_quote_64bit_integers = 1", (164,)),
        ("USE system", (164,)),
        ("SELECT * FROM system.processes", (497,)),
        ("SELECT query FROM system.query_log", (497,)),
        ("SELECT 1 IN system.processes", (497,)),
        ("SELECT * FROM merge('system', '^proc')", (497,)),
        ("SELECT * FROM view(SELECT * FROM system.processes)", (497,)),
        ("SELECT * FROM python('x')", (497,)),
        ("SELECT aiGenerate('tell me the key')", (497,)),
        ("SELECT dictGet('d', 'x', 1)", (497,)),
        ("SELECT recipient, record_key FROM export_audit", (497,)),
        ("SELECT count() FROM (SELECT * FROM default.export_audit)", (497,)),
        (
            "CREATE DICTIONARY d (k UInt64, v String) PRIMARY KEY k SOURCE(HTTP(url "
            "'http://127.0.0.1:{port}/' format 'TSV')) LAYOUT(FLAT()) LIFETIME(0)",
            (164,),
        ),
        ("SELECT * FROM url('http://127.0.0.1:{port}/', 'TSV', 'x String')", (497,)),
        ("SELECT * FROM mysql('127.0.0.1:{port}', 'd', 't', 'u', 'p')", (497,)),
        ("SELECT 1; SELECT * FROM file('{canary}')", (62,)),
        # A line break in an alias cannot forge lines of the parse tree.
        ("SELECT 1 AS `a\n      Function numbers`, file('{canary}')", (497,)),
        ("SELECT count() FROM numbers(1e15)", (159,)),
        ("SELECT groupArray(number) FROM numbers(1e9)", (241, 159)),
        ("SYSTEM DROP MARK CACHE", (164,)),
        ("DROP TABLE exchanges", (164,)),
    ],
)
async def test_named_attacks_are_refused(stack: Stack, attack: str, codes: tuple[int, ...]) -> None:
    query = attack.format(target=stack.target, canary=stack.canary_file, port=stack.canary.port)
    loaded_before = await stack.loaded()
    status, headers, body = await stack.sql(query)
    _assert_refused(status, headers, body, *codes)
    # Nothing one request did is seen by the next: the real table, the default settings.
    status, _, body = await stack.sql("SELECT count() > 0 FROM exchanges")
    assert (status, body) == (200, "1\n")
    status, _, body = await stack.sql(
        "SELECT getSetting('readonly'), getSetting('max_execution_time')"
    )
    assert (status, body) == (200, "1\t3\n")
    assert await _wait_loaded(stack, at_least=loaded_before + 1) > loaded_before


async def test_limits_cannot_be_raised_through_url_settings(stack: Stack) -> None:
    for name, value in [("max_execution_time", "0"), ("max_execution_time", "100"),
                        ("readonly_x", "1"), ("allow_introspection_functions", "1")]:  # fmt: skip
        status, headers, body = await stack.sql("SELECT 1", **{name: value})
        _assert_refused(status, headers, body, 164, 115)
    status, _, body = await stack.sql(
        "SELECT getSetting('max_execution_time')", max_execution_time="2"
    )
    assert (status, body) == (200, "2\n")


async def test_no_url_setting_names_a_file_schema_or_server(stack: Stack) -> None:
    # Format settings whose value is free text can be paths: format_template_resultset reads a
    # file (and quotes it back in its error), output_format_schema writes one. Every such
    # setting the engine lists, now or in a later version, is tried with the canary's path.
    status, _, body = await stack.sql(
        "SELECT name FROM system.settings WHERE (name LIKE 'format\\_%' OR name LIKE "
        "'output\\_format\\_%') AND type IN ('String', 'URI') ORDER BY name"
    )
    assert status == 200, body
    names = body.split()
    assert {"format_template_resultset", "output_format_schema", "format_schema"} <= set(names)
    for name in names:
        for value in (str(stack.canary_file), str(stack.target),
                      f"http://127.0.0.1:{stack.canary.port}/"):  # fmt: skip
            for fmt in ("Template", "Protobuf", "CapnProto", "CustomSeparated", "TSV"):
                status, headers, body = await stack.sql(
                    "SELECT 1 AS a", default_format=fmt, **{name: value}
                )
                assert CANARY not in body, (name, fmt)
                if name not in SAFE_STRING_SETTINGS:
                    _assert_refused(status, headers, body, 164)
    assert not stack.target.exists()
    assert not stack.target.with_suffix(".proto").exists()


async def test_system_cannot_be_the_current_database(stack: Stack) -> None:
    status, headers, body = await stack.sql("SELECT count() FROM processes", database="system")
    _assert_refused(status, headers, body, 81)
    status, _, body = await stack.sql("SELECT count() > 0 FROM exchanges", database="default")
    assert (status, body) == (200, "1\n")


async def test_browsers_and_foreign_hosts_are_refused(stack: Stack) -> None:
    port = stack.url.rsplit(":", 1)[1]
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Host": "evil.example"},
        {"Host": f"attacker.example:{port}"},
    ):
        async with stack.session.post(f"{stack.url}/", data="SELECT 1", headers=headers) as r:
            body = await r.text()
            assert r.status == 403, body
            assert r.headers["X-ClickHouse-Exception-Code"] == "516"
            assert "Access-Control-Allow-Origin" not in r.headers
    # The endpoint's own page (the console at /play) may call it.
    own = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    async with stack.session.post(f"{stack.url}/", data="SELECT 1", headers=own) as r:
        assert (r.status, await r.text()) == (200, "1\n")
