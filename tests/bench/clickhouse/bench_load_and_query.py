"""Benchmark: load synthetic exchanges into the embedded ClickHouse and time the analysts' queries.

Run by hand (not in CI), from the repository root:

    python -m tests.bench.clickhouse.bench_load_and_query --rows 10000000

Two load figures: the real loader path (events → ClickHouseSink: raw tables, assembly, exchange
rows, rollup) on a smaller set, and a bulk INSERT ... SELECT FROM numbers() inside the engine that
builds the big `exchanges` table quickly. Then every example query of docs/ANALYSTS.md is timed
(median of three runs after a warm-up) and the results are written to docs/PERFORMANCE.md under
"## ClickHouse".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.sink import ClickHouseSink
from consumers.sink import Batch, Record
from schemas import Codec
from tests.integration.clickhouse.synthetic import encoded, uuid7
from tests.integration.clickhouse.test_analyst_examples import captured_mix, examples

ROOT = Path(__file__).resolve().parents[3]
PERFORMANCE = ROOT / "docs" / "PERFORMANCE.md"
DAY_MS = 86_400_000

# One vectorised SELECT per block of exchanges: ~30 days of traffic, 6 models, 50 000 clients,
# realistic text (word salad from a small vocabulary compresses like prose, not like noise).
_BULK = """
INSERT INTO exchanges (
    request_id, received_at, completed_at, method, path, endpoint, dialect, provider,
    upstream_url, model_requested, model_sent, model_responded, stream, peer_ip, forwarded_for,
    client_ip, user_agent, client_key_fingerprint, request_headers, response_headers,
    upstream_request_id, request_body, request_body_size, request_json_valid, request_params,
    temperature, max_tokens, tools_count, system_prompt, messages, response_text, choices,
    finish_reason, response_id, prompt_tokens, completion_tokens, total_tokens, cached_tokens,
    usage_estimated, status, upstream_status, outcome, error_type, ttfb_ms, ttft_ms, duration_ms,
    bytes_in, bytes_out, chunk_count, gap_max_ms, gap_p50_ms, gap_p99_ms, sse_events, done_marker
)
WITH
    {start_ms:UInt64} + intDiv(number * {span_ms:UInt64}, {total:UInt64}) AS ms,
    concat(leftPad(lower(hex(ms)), 12, '0'), '7',
           leftPad(lower(hex(cityHash64(number) % 4096)), 3, '0'),
           leftPad(lower(hex(cityHash64(number, 1))), 16, '0')) AS h,
    ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1', 'o3-mini', 'claude-3-5-sonnet', 'claude-3-haiku']
        AS models,
    models[1 + cityHash64(number, 2) % 6] AS m,
    m LIKE 'claude%' AS anthropic,
    ['the', 'model', 'answer', 'token', 'stream', 'user', 'data', 'query', 'fast', 'cluster',
     'prompt', 'value', 'result', 'table', 'with', 'and', 'for', 'system', 'tool', 'call'] AS words,
    arrayStringConcat(arrayMap(i -> words[1 + cityHash64(number, i) % 20],
                               range(10 + cityHash64(number, 3) % 60)), ' ') AS prompt,
    arrayStringConcat(arrayMap(i -> words[1 + cityHash64(number, i, 7) % 20],
                               range(20 + cityHash64(number, 4) % 150)), ' ') AS answer,
    cityHash64(number, 5) % 100 AS roll,
    IPv4NumToString(toUInt32(167772160 + cityHash64(number, 6) % 50000)) AS ip,
    number % 3 != 0 AS is_stream,
    if(roll < 3, 429, if(roll < 4, 500, 200)) AS st,
    50 + cityHash64(number, 8) % 900 AS ttfb,
    ttfb + 2 * length(answer) AS dur
SELECT
    concat(substring(h, 1, 8), '-', substring(h, 9, 4), '-', substring(h, 13, 4), '-',
           substring(h, 17, 4), '-', substring(h, 21, 12)),
    fromUnixTimestamp64Milli(ms, 'UTC'),
    fromUnixTimestamp64Milli(ms + dur, 'UTC'),
    'POST',
    if(anthropic, '/v1/messages', '/v1/chat/completions'),
    if(anthropic, '/v1/messages', '/v1/chat/completions'),
    if(anthropic, 'anthropic', 'openai'),
    if(anthropic, 'anthropic', 'openai'),
    if(anthropic, 'https://api.anthropic.com/v1/messages',
       'https://api.openai.com/v1/chat/completions'),
    m, m, m,
    is_stream,
    ip, '', ip,
    ['OpenAI/Python 1.50.0', 'curl/8.5.0', 'Anthropic/Python 0.40.0', 'langchain/0.3',
     'node-fetch'][1 + cityHash64(number, 9) % 5],
    concat('fp:', leftPad(lower(hex(cityHash64(number, 10) % 500)), 24, '0')),
    map('content-type', 'application/json', 'user-agent', 'OpenAI/Python 1.50.0'),
    map('content-type', if(is_stream, 'text/event-stream', 'application/json')),
    concat('req_', lower(hex(cityHash64(number, 11)))),
    concat('{"model":"', m, '","messages":[{"role":"user","content":"', prompt, '"}]}'),
    length(prompt) + 60,
    true,
    '{}',
    if(roll < 50, 0.2 * (roll % 5), NULL),
    if(roll % 2 = 0, 1024, NULL),
    if(roll < 20, 2, 0),
    concat('You are assistant number ', toString(cityHash64(number, 12) % 40), '.'),
    [('user', prompt)],
    answer, [answer],
    if(st != 200, '', if(roll < 15, 'tool_calls', 'stop')),
    concat('chatcmpl-', lower(hex(number))),
    toUInt32(length(prompt) / 4 + 20), toUInt32(length(answer) / 4),
    toUInt32(length(prompt) / 4 + 20 + length(answer) / 4),
    if(roll < 30, toUInt32(length(prompt) / 8), NULL),
    roll > 95,
    st, st, if(st = 200, 'ok', 'upstream_http_error'),
    if(st = 200, '', concat('http_', toString(st))),
    ttfb, ttfb + 15, dur,
    length(prompt) + 60, length(answer) * 3,
    if(is_stream, 3 + length(answer) / 20, 1),
    if(is_stream, 20 + cityHash64(number, 13) % (if(roll = 7, 5000, 200)), 0),
    if(is_stream, 20, 0), if(is_stream, 40 + cityHash64(number, 13) % 150, 0),
    if(is_stream, 3 + length(answer) / 20, 0), is_stream
FROM numbers({offset:UInt64}, {count:UInt64})
"""


NOTES = [
    "Reading the figures:",
    "",
    "- The bulk rate includes generating every synthetic row inside the engine (prompt and answer",
    "  text drawn word by word), so it is a lower bound of what ClickHouse itself ingests.",
    "- The loader-path rate is end to end for the ClickHouse side of the pipeline: Avro",
    "  decoding, three raw inserts, the already-loaded check, SSE assembly and the `exchanges`",
    "  insert with its rollup view, one batch after another on one thread. Kafka fetch time is",
    "  not included.",
    "- Bytes on disk count the `exchanges` table only (full request body, messages, response",
    "  text, headers); raw tables add the request body and chunk bytes once more.",
    "- Query 18 returns no rows at this scale: the bulk rows have no raw chunks, and the most",
    "  stalled exchange is one of them.",
    "",
]


async def _loader_path(clickhouse_url: str, exchanges: int) -> dict[str, float]:
    """The real loader: encoded events → decode → ClickHouseSink.write, batch by batch."""
    now = time.time_ns() // 1_000_000 - 40 * DAY_MS
    template = captured_mix(now)
    mix = [
        template[i % len(template)].replace(
            request_id=uuid7(now + i, f"bench{i}"), received_at_ms=now + i
        )
        for i in range(exchanges)
    ]
    codec = Codec()
    messages = encoded(mix, codec)
    records = [
        Record("bench", 0, offset, key.encode(), value, codec.decode(value))
        for offset, (key, value) in enumerate(messages)
    ]
    sink = ClickHouseSink(ClickHouse(clickhouse_url))
    await sink.start()
    try:
        started = time.perf_counter()
        step = 5000  # events per batch, as a busy loader would see them
        for low in range(0, len(records), step):
            await sink.write(Batch.of(records[low : low + step]))
        elapsed = time.perf_counter() - started
    finally:
        await sink.stop()
    return {"exchanges": exchanges, "events": len(records), "seconds": elapsed}


async def _bulk(clickhouse: ClickHouse, rows: int, block: int) -> float:
    start_ms = time.time_ns() // 1_000_000 - 30 * DAY_MS
    started = time.perf_counter()
    for offset in range(0, rows, block):
        count = min(block, rows - offset)
        await clickhouse.command(
            _BULK,
            {"start_ms": start_ms, "span_ms": 30 * DAY_MS, "total": rows, "offset": offset,
             "count": count},
        )  # fmt: skip
        print(f"  bulk: {offset + count:,} / {rows:,} rows, {time.perf_counter() - started:.0f}s")
    return time.perf_counter() - started


async def _time_queries(clickhouse: ClickHouse) -> list[tuple[int, str, float, int]]:
    titles = dict(re.findall(r"^### (\d+)\. (.+)$", (ROOT / "docs/ANALYSTS.md").read_text(), re.M))
    results = []
    for number, sql in sorted(examples().items()):
        await clickhouse.raw(sql, fmt="Null")  # warm-up
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            out = await clickhouse.raw(sql, fmt="TSV")
            runs.append(time.perf_counter() - started)
        results.append((number, titles[str(number)], statistics.median(runs), out.count(b"\n")))
        print(f"  query {number}: {statistics.median(runs) * 1000:.0f} ms")
    return results


async def run(rows: int, loader_exchanges: int, block: int, data_dir: Path) -> str:
    url = f"chdb://{data_dir}"
    print(f"loader path: {loader_exchanges:,} exchanges through ClickHouseSink")
    loaded = await _loader_path(url, loader_exchanges)
    async with ClickHouse(url) as clickhouse:
        print(f"bulk load: {rows:,} exchanges")
        bulk_s = await _bulk(clickhouse, rows, block)
        await clickhouse.command("OPTIMIZE TABLE exchanges FINAL")
        total, on_disk, raw_bytes = (
            await clickhouse.rows(
                "SELECT sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes) "
                "FROM system.parts WHERE active AND database = currentDatabase() "
                "AND table = 'exchanges'"
            )
        )[0]
        print("queries")
        timings = await _time_queries(clickhouse)
    lines = [
        "## ClickHouse",
        "",
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {platform.machine()}, "
        f"{os.cpu_count()} CPU cores shared with other jobs, embedded engine (chdb), one process.",
        "",
        "Command (from the repository root):",
        "",
        "```",
        f"python -m tests.bench.clickhouse.bench_load_and_query --rows {rows} "
        f"--loader-exchanges {loader_exchanges}",
        "```",
        "",
        "| figure | value |",
        "|---|---|",
        f"| loader path (events → ClickHouseSink: 3 raw tables, assembly, `exchanges`, rollup) | "
        f"{loaded['events'] / loaded['seconds']:,.0f} events/s = "
        f"{loaded['exchanges'] / loaded['seconds']:,.0f} exchanges/s "
        f"({loaded['exchanges']:,} exchanges, {loaded['events']:,} events) |",
        f"| bulk load into `exchanges` (INSERT … SELECT FROM numbers(), rollup view included) | "
        f"{rows / bulk_s:,.0f} rows/s ({rows:,} rows in {bulk_s:.0f} s) |",
        f"| rows in `exchanges` | {total:,} |",
        f"| bytes on disk per exchange (after OPTIMIZE) | {on_disk / total:,.0f} B "
        f"(uncompressed {raw_bytes / total:,.0f} B, ratio {raw_bytes / on_disk:.1f}x) |",
        "",
        "Example queries of docs/ANALYSTS.md over that table (median of 3 warm runs):",
        "",
        "| # | question | time | result rows |",
        "|---|---|---|---|",
        *[f"| {n} | {title} | {s * 1000:,.0f} ms | {r} |" for n, title, s, r in timings],
        "",
        *NOTES,
    ]
    return "\n".join(lines)


def _write_section(section: str) -> None:
    text = PERFORMANCE.read_text(encoding="utf-8") if PERFORMANCE.exists() else "# Performance\n\n"
    # The "### Loader throughput" subsection comes from bench_loader.py and is kept.
    pattern = re.compile(r"^## ClickHouse\n.*?(?=^## |^### Loader throughput|\Z)", re.M | re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
    PERFORMANCE.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--loader-exchanges", type=int, default=20_000)
    parser.add_argument("--block", type=int, default=1_000_000, help="rows per bulk INSERT")
    parser.add_argument("--dir", type=Path, help="engine directory (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-clickhouse-") as tmp:
        data_dir = args.dir or Path(tmp)
        section = asyncio.run(run(args.rows, args.loader_exchanges, args.block, data_dir))
    _write_section(section)
    print(section)


if __name__ == "__main__":
    main()
