"""Every example query of docs/ANALYSTS.md runs against a captured mix of exchanges, and its
result is checked; every column of every table is documented there."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.sink import ClickHouseSink
from consumers.clickhouse.sqlconsole import EXAMPLE_PATTERN
from consumers.sink import Batch, Record
from schemas import Codec
from tests.integration.clickhouse.synthetic import Exchange, encoded, uuid7

DOC = Path(__file__).resolve().parents[3] / "docs" / "ANALYSTS.md"
HOUR_MS = 3_600_000


def examples() -> dict[int, str]:
    return {int(n): sql for n, _, sql in EXAMPLE_PATTERN.findall(DOC.read_text(encoding="utf-8"))}


def captured_mix(now_ms: int) -> list[Exchange]:
    """Ten exchanges: two days, two providers, streams, tools, an error, a stalled stream."""
    today = now_ms - 2 * HOUR_MS
    mini = Exchange(request_id="", received_at_ms=0)
    gpt4o = mini.replace(
        model="gpt-4o", stream=False, peer_ip="10.0.0.1", client_ip="203.0.113.7",
        forwarded_for="198.51.100.9, 203.0.113.7", user_agent="curl/8.5.0",
        system_prompt="You are a research agent.", tools=("search", "fetch"),
        tool_call="search", temperature=0.2, max_tokens=256, usage=(40, 8),
    )  # fmt: skip
    claude = mini.replace(
        model="claude-3-5-sonnet", provider="anthropic", dialect="anthropic",
        endpoint="/v1/messages", stream=False, client_ip="10.0.0.7", peer_ip="10.0.0.7",
        user_agent="Anthropic/Python 0.40.0", system_prompt="You are Claude.",
        temperature=0.7, usage=(30, 10), answer="Bonjour",
    )  # fmt: skip
    kinds = [
        *[mini.replace(cached_tokens=4 if i < 2 else None) for i in range(4)],
        mini.replace(client_ip="10.0.0.6", peer_ip="10.0.0.6", gap_ms=(20, 2500, 20)),
        gpt4o,
        gpt4o,
        claude,
        claude,
        gpt4o.replace(
            status=429,
            outcome="upstream_http_error",
            error_type="http_429",
            error_message="rate limited",
            usage=None,
            tool_call=None,
        ),
    ]
    starts = [today + i * 1000 for i in range(len(kinds))]
    starts[4] = today - 24 * HOUR_MS  # the stalled stream was yesterday
    return [
        x.replace(request_id=uuid7(at, f"analyst{i}"), received_at_ms=at)
        for i, (x, at) in enumerate(zip(kinds, starts, strict=True))
    ]


@pytest.fixture
async def captured(database_url: str) -> AsyncIterator[tuple[ClickHouse, list[Exchange]]]:
    mix = captured_mix(time.time_ns() // 1_000_000)
    codec = Codec()
    records = [
        Record("topic", 0, offset, key.encode(), value, codec.decode(value))
        for offset, (key, value) in enumerate(encoded(mix, codec))
    ]
    sink = ClickHouseSink(ClickHouse(database_url))
    await sink.start()
    try:
        # Two batches: exchanges whose events span batches must come out whole too.
        middle = len(records) // 2
        for part in (records[:middle], records[middle:]):
            assert not (await sink.write(Batch.of(part))).rejected
        yield sink.clickhouse, mix
    finally:
        await sink.stop()


async def _run(clickhouse: ClickHouse, sql: str) -> list[dict[str, Any]]:
    """Run as an analyst would: read-only, the query text exactly as documented."""
    out = await clickhouse.raw(sql, fmt="JSONEachRow", readonly=True)
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


def _day(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def _pick(rows: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(row[k] for k in keys) for row in rows]


Check = Callable[[list[dict[str, Any]], list[Exchange]], None]


def _expected() -> dict[int, Check]:
    """What each example must return for ``captured_mix``: exact where the value is exact."""

    def tokens_per_day(rows: list[dict[str, Any]], mix: list[Exchange]) -> None:
        yesterday, today = _day(mix[4].received_at_ms), _day(mix[0].received_at_ms)
        assert _pick(rows, "day", "model", "prompt", "completion", "estimated_rows") == [
            (yesterday, "gpt-4o-mini", 12, 5, 0),
            (today, "claude-3-5-sonnet", 60, 20, 0),
            (today, "gpt-4o", 134, 16, 1),  # 40 + 40 reported, 54 estimated for the 429
            (today, "gpt-4o-mini", 48, 20, 0),
        ]

    def ttft(rows: list[dict[str, Any]], mix: list[Exchange]) -> None:
        # openai: 8 exchanges, 7 with a first token (the 429's error body generated none).
        assert _pick(rows, "provider", "exchanges") == [("anthropic", 2), ("openai", 7)]
        assert all(100 <= row["p95_ttft_ms"] <= 120 for row in rows)

    def latency(rows: list[dict[str, Any]], mix: list[Exchange]) -> None:
        assert _pick(rows, "stream", "exchanges", "avg_ttfb_ms") == [
            (False, 4, 100),
            (True, 5, 100),
        ]

    def per_minute(rows: list[dict[str, Any]], mix: list[Exchange]) -> None:
        assert sum(row["total"] for row in rows) == 10
        assert sum(row["failures"] for row in rows) == 1
        assert {row["provider"] for row in rows} == {"openai", "anthropic"}

    def chunk_timeline(rows: list[dict[str, Any]], mix: list[Exchange]) -> None:
        assert _pick(rows, "seq", "at_ms") == [
            (1, 100), (2, 120), (3, 2620), (4, 2640), (5, 2660), (6, 2680), (7, 2700)
        ]  # fmt: skip

    def bytes_received(rows: list[dict[str, Any]], mix: list[Exchange]) -> None:
        assert rows == [{"bytes_received": b"".join(mix[3].response_chunks()).decode()}]

    return {
        1: tokens_per_day,
        2: ttft,
        3: lambda rows, _: (
            _pick(rows, "provider", "exchanges", "failed", "error_rate")
            == [("anthropic", 2, 0, 0), ("openai", 8, 1, 0.125)]
        ),
        4: lambda rows, _: (
            _pick(rows, "user_agent", "exchanges", "clients")
            == [
                ("OpenAI/Python 1.50.0", 5, 2),
                ("curl/8.5.0", 3, 1),
                ("Anthropic/Python 0.40.0", 2, 1),
            ]
        ),
        5: lambda rows, mix: (
            _pick(rows, "request_id", "status")
            == [(mix[9].request_id, 429), (mix[6].request_id, 200), (mix[5].request_id, 200)]
        ),
        6: lambda rows, _: rows == [{"exchanges": 7, "clients": 3}],
        7: lambda rows, _: (
            _pick(rows, "model_requested", "prompt_chars", "prompt_tokens")
            == [("gpt-4o", 55, 54), ("gpt-4o", 55, 40), ("gpt-4o", 55, 40)]  # 54 estimated (429)
        ),
        8: lambda rows, _: (
            _pick(rows, "model", "offered_tools", "called_tools", "tool_use_share")
            == [("claude-3-5-sonnet", 0, 0, 0), ("gpt-4o", 3, 2, 0.667), ("gpt-4o-mini", 0, 0, 0)]
        ),
        9: lambda rows, mix: (
            _pick(rows, "request_id", "gap_max_ms", "gap_p50_ms") == [(mix[4].request_id, 2500, 20)]
        ),
        10: latency,
        11: per_minute,
        12: lambda rows, _: (
            sorted(_pick(rows, "model", "total", "tokens", "error_rate"))
            == [
                ("claude-3-5-sonnet", 2, 80, 0),
                ("gpt-4o", 3, 150, 0.333),
                ("gpt-4o-mini", 1, 17, 0),
                ("gpt-4o-mini", 4, 68, 0),
            ]
        ),
        13: lambda rows, _: (
            rows == [{"model": "gpt-4o-mini", "cached": 8, "prompt": 24, "cached_share": 0.333}]
        ),
        14: lambda rows, _: (
            _pick(rows, "system_prompt", "tools", "exchanges", "tokens")
            == [
                ("You are terse.", 0, 5, 85),
                ("You are a research agent.", 2, 3, 150),
                ("You are Claude.", 0, 2, 80),
            ]
        ),
        15: lambda rows, _: (
            rows
            == [
                {
                    "peer_ip": "10.0.0.1",
                    "forwarded_for": "198.51.100.9, 203.0.113.7",
                    "client_ip": "203.0.113.7",
                    "exchanges": 3,
                }
            ]
        ),
        16: lambda rows, _: (
            _pick(rows, "model", "finish_reason", "exchanges")
            == [
                ("claude-3-5-sonnet", "end_turn", 2),
                ("gpt-4o", "", 1),
                ("gpt-4o", "tool_calls", 2),
                ("gpt-4o-mini", "stop", 5),
            ]
        ),
        17: lambda rows, _: (
            _pick(rows, "temperature", "max_tokens", "exchanges")
            == [(None, None, 5), (0.2, 256, 3), (0.7, 1024, 2)]
        ),
        18: chunk_timeline,
        19: bytes_received,
        20: lambda rows, _: _pick(rows, "exchanges", "tokens", "estimated") == [(10, 315, 1)],
        21: lambda rows, mix: (
            _pick(
                rows,
                "status",
                "provider_error_type",
                "provider_error_code",
                "provider_error_message",
                "upstream_request_id",
            )
            == [
                (
                    429,
                    "requests",
                    "rate_limit_exceeded",
                    "rate limited",
                    f"req_{mix[9].request_id[-12:]}",
                )
            ]
        ),
    }


async def test_every_example_query_runs_and_returns_what_it_says(
    captured: tuple[ClickHouse, list[Exchange]],
) -> None:
    clickhouse, mix = captured
    queries = examples()
    expected = _expected()
    assert len(queries) >= 15
    assert sorted(queries) == sorted(expected), "each example needs a check, each check an example"
    for number, sql in sorted(queries.items()):
        rows = await _run(clickhouse, sql)
        assert rows, f"example {number} returned nothing"
        verdict = expected[number](rows, mix)
        assert verdict is not False, f"example {number} returned {rows}"


async def test_every_column_of_every_table_is_documented(
    captured: tuple[ClickHouse, list[Exchange]],
) -> None:
    clickhouse, _ = captured
    doc = DOC.read_text(encoding="utf-8")
    columns = await clickhouse.rows(
        "SELECT table, name FROM system.columns WHERE database = currentDatabase() "
        "AND table NOT LIKE '.inner%' AND table != 'exchanges_per_minute_mv'"
    )
    assert len(columns) > 100
    missing = [f"{table}.{name}" for table, name in columns if f"`{name}`" not in doc]
    assert not missing, f"columns missing from docs/ANALYSTS.md: {missing}"
    tables = {table for table, _ in columns}
    assert all(f"### `{table}`" in doc for table in tables), tables
