"""Benchmark of `export dataset`: conversations per second, peak RSS, the near-duplicate pass.

Synthetic exchanges are generated straight into a fresh chdb directory with SQL (no Kafka, no
loader): two-turn chats (so half the exchanges fold), a streamed answer of five chunks each, an
email and a phone number in every first question; the question's words are drawn from a small
vocabulary, so some conversations are near duplicates of others. Each
configuration then runs in a child process of its own (the embedded engine is one per process,
and the child's peak RSS is the export's alone).

    .venv/bin/python tests/bench/export/bench_export.py --exchanges 100000
    .venv/bin/python tests/bench/export/bench_export.py --exchanges 1000000 --only raw

Configurations: ``open`` (scrubbing, language, exact and near dedup), ``open-no-language``,
``open-no-near`` (to isolate the near-duplicate pass) and ``raw`` (the legal profile: no
scrubbing, no language, no near dedup). Results go to stdout as one JSON line each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from consumers.clickhouse.client import ClickHouse  # noqa: E402
from consumers.clickhouse.migrate import migrate  # noqa: E402

CONFIGS = {
    "open": ["--profile", "open"],
    "open-no-language": ["--profile", "open", "--no-language"],
    "open-no-near": ["--profile", "open", "--no-near-dedup"],
    "raw": ["--profile", "legal", "--no-language", "--no-near-dedup"],
}

_GENERATE = """
INSERT INTO exchanges (request_id, received_at, completed_at, endpoint, dialect, provider,
    model_requested, model_sent, model_responded, stream, client_ip, user_agent, request_body,
    request_json_valid, messages, system_prompt, response_text, finish_reason, prompt_tokens,
    completion_tokens, total_tokens, status, outcome, ttft_ms, duration_ms, chunk_count)
WITH
    intDiv(number, 2) AS k,
    number % 2 + 1 AS turn,
    ['sort', 'parse', 'merge', 'plot'][k % 4 + 1] AS verb,
    ['list', 'table', 'file', 'queue', 'tree', 'graph', 'string', 'matrix', 'stream', 'cache',
     'index', 'record', 'column', 'buffer', 'vector', 'map', 'set', 'heap', 'log', 'batch']
        AS vocab,
    arrayStringConcat(arrayMap(i -> vocab[cityHash64(k, i) % 20 + 1], range(12)), ' ') AS topic,
    concat('Question ', toString(k), ': how do I ', verb, ' a ', topic, ' of ',
           toString(k * 7 % 1000),
           ' items in Python without losing the original order? Write to me at user',
           toString(k), '@example.com or call +1 415 555 ', leftPad(toString(k % 10000), 4, '0'),
           '.') AS u1,
    concat('Here is how to ', verb, ' it: use sorted() with a key, or a stable algorithm; ',
           'the original order of equal items is kept.') AS a1,
    'Thanks! Can you show the same with a custom comparator and explain the complexity?' AS u2,
    'Sure: functools.cmp_to_key turns a comparator into a key; the sort stays O(n log n).' AS a2,
    if(turn = 1,
       [('system', 'You are a helpful assistant.'), ('user', u1)],
       [('system', 'You are a helpful assistant.'), ('user', u1), ('assistant', a1),
        ('user', u2)]) AS msgs
SELECT
    concat('0190', leftPad(hex(number), 28, '0')) AS request_id,
    toDateTime64('2026-11-01 00:00:00', 6, 'UTC') + toIntervalSecond(number) AS received_at,
    received_at + toIntervalMillisecond(900) AS completed_at,
    '/v1/chat/completions', 'openai', 'openai', 'gpt-4o-mini', 'gpt-4o-mini',
    'gpt-4o-mini-2024-07-18', true,
    concat('10.', toString(k % 250), '.', toString(k % 199), '.7'), 'OpenAI/Python 1.50.0',
    concat('{"model":"gpt-4o-mini","stream":true,"temperature":0.7,"messages":',
           toJSONString(arrayMap(m -> map('role', m.1, 'content', m.2), msgs)), '}'),
    true, msgs, 'You are a helpful assistant.', if(turn = 1, a1, a2), 'stop',
    60, 25, 85, 200, 'ok', 180.5, 900.0, 5
FROM numbers({n:UInt64})
"""
_CHUNKS = """
INSERT INTO chunks_raw (request_id, seq, offset_ns, data, size)
SELECT concat('0190', leftPad(hex(intDiv(number, 5)), 28, '0')), number % 5 + 1,
       (180 + (number % 5) * 40) * 1000000, 'data: {}', 8
FROM numbers({n:UInt64})
"""


async def _generate(directory: Path, exchanges: int) -> float:
    started = time.perf_counter()
    async with ClickHouse(f"chdb://{directory}") as clickhouse:
        await migrate(clickhouse)
        await clickhouse.command(_GENERATE, {"n": exchanges})
        await clickhouse.command(_CHUNKS, {"n": exchanges * 5})
    return time.perf_counter() - started


def _resident_mb(pid: int) -> dict[str, int]:
    """A process's resident memory by kind (/proc/PID/status), in MB; empty once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {
        name: int(value.split()[0]) // 1024
        for name, _, value in (line.partition(":") for line in lines)
        if name in ("RssAnon", "RssFile")
    }


def _run_one(directory: Path, name: str, out: Path) -> dict[str, object]:
    command = [
        sys.executable, "-m", "deploy.cli", "export", "dataset", str(out),
        "--clickhouse", f"chdb://{directory}", "--raw", *CONFIGS[name],
    ]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peaks = {"RssAnon": 0, "RssFile": 0}
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        for kind, mb in _resident_mb(child.pid).items():
            peaks[kind] = max(peaks[kind], mb)
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    stdout = child.stdout.read().decode() if child.stdout else ""
    stderr = child.stderr.read().decode() if child.stderr else ""
    if status != 0:
        raise SystemExit(f"{name} failed: {stderr}")
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["metadata"]["counts"]
    conversations = counts["conversations"]
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "config": name,
        "exchanges": counts["exchanges_matched"],
        "conversations": conversations,
        "written": sum(counts["rows_by_split"].values()),
        "near_duplicates": counts["near_duplicates"],
        "seconds": round(elapsed, 1),
        "cpu_seconds": round(cpu, 1),
        "conversations_per_s": round(conversations / elapsed),
        "conversations_per_cpu_s": round(conversations / cpu),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        # Sampled every 50 ms: the process's own memory, and the library files' pages it has
        # mapped and touched (shared with other processes, and reclaimable).
        "peak_rss_anon_mb": peaks["RssAnon"],
        "peak_rss_file_mb": peaks["RssFile"],
        "stdout": stdout.strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exchanges", type=int, default=100_000)
    parser.add_argument("--only", action="append", choices=sorted(CONFIGS))
    parser.add_argument("--generate-into", help=argparse.SUPPRESS)  # the generating child
    args = parser.parse_args()
    if args.generate_into:
        seconds = asyncio.run(_generate(Path(args.generate_into), args.exchanges))
        print(json.dumps({"generated": args.exchanges, "seconds": round(seconds, 1)}), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-export-", dir=ROOT / "data") as temporary:
        root = Path(temporary)
        # Generated in a child: the engine stays open in the process that opened it.
        subprocess.run(
            [sys.executable, __file__, "--exchanges", str(args.exchanges),
             "--generate-into", str(root / "clickhouse")],
            check=True,
        )  # fmt: skip
        for name in args.only or list(CONFIGS):
            print(json.dumps(_run_one(root / "clickhouse", name, root / name)), flush=True)
    print(f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


if __name__ == "__main__":
    main()
