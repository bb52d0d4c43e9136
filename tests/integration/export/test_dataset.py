"""`export dataset` over captured traffic: fake upstream → proxy → Kafka → loader → chdb → files.

The traffic holds what a dataset must handle: a three-turn streamed chat (two exchanges fold into
the third) with planted personal data and secrets in every turn (the fake upstream echoes them
back, so they are in the answers too), an exact duplicate, a near duplicate, and a plain
conversation. The files are read back with pyarrow, Hugging Face ``datasets``, pandas and
DuckDB; the planted values are looked for in every byte of every file, decompressed or not.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import pyarrow.parquet as pq
import pytest

from consumers.export import shards as shard_files
from consumers.export.dataset import DatasetOptions, export_dataset
from consumers.export.manifest import verify
from consumers.export.records import Profile
from consumers.export.selection import Selection
from consumers.export.shards import ShardWriter
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.slow  # ~15 s: real traffic through Kafka, four exports

PLANTED = {
    "EMAIL": "alice.smith@example.com",
    "NAME": "Alice Smith",
    "PHONE": "+44 20 7946 0958",
    "CARD": "4111 1111 1111 1111",
    "IP": "203.0.113.77",
    "URL": "https://files.example.com/dl?sig=Q1w2E3r4T5y6",
    "SECRET": "Zx8Kq2LmN4pR7sT1vW3yA5bC9dE0fG",
    "PASSWORD": "hunter2hunter2",
}
TURNS = (
    f"Hi, my name is {PLANTED['NAME']} and my email is {PLANTED['EMAIL']}.",
    f"My card is {PLANTED['CARD']} and my phone is {PLANTED['PHONE']}.",
    f"The server {PLANTED['IP']} takes token {PLANTED['SECRET']}, password: "
    f"{PLANTED['PASSWORD']}; the file is at {PLANTED['URL']} for Alice.",
)
LONG = (
    "Write a detailed travel plan for a week in Lisbon covering museums, food markets, day trips "
    "to Sintra and Cascais, the best viewpoints at sunset, tram routes, budget tips for students, "
    "and what to pack for unpredictable spring weather near the Atlantic coast please"
)
RECORD_KEY = bytes(range(32))


async def _chat(
    session: aiohttp.ClientSession, url: str, messages: list[dict[str, str]], *, stream: bool
) -> tuple[str, str]:
    """Send one chat request; the request id and the answer text the client received."""
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages, "stream": stream}
    async with session.post(f"{url}/v1/chat/completions", json=body) as response:
        assert response.status == 200
        request_id = response.headers["x-logorhythms-request-id"]
        if not stream:
            doc = await response.json()
            return request_id, doc["choices"][0]["message"]["content"]
        text = []
        async for line in response.content:
            if line.startswith(b"data: {"):
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    text.append(choices[0]["delta"]["content"])
        return request_id, "".join(text)


async def _capture(pipeline: Pipeline) -> dict[str, Any]:
    ids: list[str] = []
    async with aiohttp.ClientSession() as session:
        messages = [{"role": "system", "content": "You are a concierge."}]
        for text in TURNS:
            messages.append({"role": "user", "content": text})
            request_id, answer = await _chat(session, pipeline.proxy_url, messages, stream=True)
            messages.append({"role": "assistant", "content": answer})
            ids.append(request_id)
        chat_leaf = ids[-1]
        for _ in range(2):  # the same question twice: an exact duplicate
            request_id, _ = await _chat(
                session, pipeline.proxy_url, [{"role": "user", "content": "What is 2+2?"}],
                stream=False,
            )  # fmt: skip
            ids.append(request_id)
        for text in (LONG, LONG.replace("students", "families")):  # a near duplicate
            request_id, _ = await _chat(
                session, pipeline.proxy_url, [{"role": "user", "content": text}], stream=True
            )
            ids.append(request_id)
        request_id, _ = await _chat(
            session, pipeline.proxy_url,
            [{"role": "user", "content": "Quelle est la capitale de l'Australie ?"}], stream=True,
        )  # fmt: skip
        ids.append(request_id)
    await pipeline.wait_for(
        "SELECT count() FROM exchanges FINAL WHERE request_id IN {ids:Array(String)}",
        {"ids": ids},
        lambda rows: rows[0][0] == len(ids),
    )
    return {"ids": ids, "chat_leaf": chat_leaf}


async def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    """A command in a thread, so the loader in this event loop keeps running meanwhile."""
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, check=False
    )


def _every_text(directory: Path) -> bytes:
    """Every file's bytes, and decompressed: Parquet values as JSON, gzip members inflated."""
    out = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        out.append(raw)
        if path.name.endswith(".parquet"):
            out.append(json.dumps(pq.read_table(path).to_pylist(), default=str).encode())
        elif path.name.endswith(".gz"):
            out.append(gzip.decompress(raw))
    return b"\n".join(out)


async def test_dataset_export_folds_scrubs_dedups_and_reads_back_everywhere(
    pipeline: Pipeline, tmp_path: Path, clickhouse_url: str
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    captured = await _capture(pipeline)
    selection = Selection(since=since)
    # A token count of a question: its messages, nothing generated. Not a conversation.
    await pipeline.clickhouse.command(
        "INSERT INTO exchanges (request_id, received_at, completed_at, endpoint, dialect,"
        " provider, model_requested, request_json_valid, messages, outcome, status)"
        " VALUES ({id:String}, now64(6), now64(6), '/v1/messages/count_tokens', 'anthropic',"
        " 'anthropic', 'claude-test-model', 1, [('user', 'How many tokens is this question?')],"
        " 'ok', 200)",
        {"id": "00000000-0000-7000-8000-c0a7700c0a70"},
    )

    def options(**overrides: Any) -> DatasetOptions:
        values: dict[str, Any] = {
            "profile": Profile.named("open"),
            "selection": selection,
            "recipient": "Acme Research",
            "licence": "cc-by-nc-4.0",
            "near_duplicate_threshold": 0.5,
        }
        return DatasetOptions(**{**values, **overrides})

    first = await export_dataset(clickhouse_url, tmp_path / "a", options(), record_key=RECORD_KEY)
    counts = first.counts
    assert (counts.exchanges, counts.folded) == (8, 2)
    assert counts.conversations == 6
    assert (counts.exact_duplicates, counts.near_duplicates) == (1, 1)
    assert counts.written == {"train": 4}
    for kind in ("EMAIL", "NAME", "PHONE", "CARD", "IP", "URL"):
        assert counts.scrubbed[kind] >= 1, kind
    assert counts.scrubbed["SECRET"] >= 2  # the token and the password

    # Nothing planted is left in any file, in any encoding.
    text = _every_text(tmp_path / "a")
    left = [name for name, value in PLANTED.items() if value.encode() in text]
    left += ["first name"] if b"Alice" in text else []
    assert left == []

    # The folded conversation: three user turns, three answers, each answer's timing.
    shard = tmp_path / "a" / "data" / "train-00000-of-00001.parquet"
    table = pq.read_table(shard)
    rows = table.to_pylist()
    assert len(rows) == 4
    chat = max(rows, key=lambda r: r["turn"])
    assert chat["turn"] == 3
    assert [m["role"] for m in chat["messages"]] == ["system"] + ["user", "assistant"] * 3
    assert "NAME_1" in chat["messages"][1]["content"]
    assert "EMAIL_1" in chat["messages"][1]["content"]
    assert "EMAIL_1" in chat["messages"][2]["content"]  # the echo: the same placeholder
    assert [t["turn"] for t in chat["turn_timing"]] == [1, 2, 3]
    assert all(t["captured"] and t["streamed"] for t in chat["turn_timing"])
    assert all(t["ttft_ms"] > 0 and t["chunk_offsets_ms"] for t in chat["turn_timing"])
    leaf = await pipeline.exchange(captured["chat_leaf"], "chunk_count, ttft_ms")
    assert len(chat["turn_timing"][-1]["chunk_offsets_ms"]) == leaf["chunk_count"]
    assert chat["turn_timing"][-1]["ttft_ms"] == leaf["ttft_ms"]
    assert all(t["chunk_offsets_ms"] == sorted(t["chunk_offsets_ms"]) for t in chat["turn_timing"])
    assert chat["timestamp"].time() == datetime.min.time()  # the open profile: the day only
    assert chat["hashed_ip"] is None
    assert chat["request_id"] is None
    assert {r["language"] for r in rows} >= {"en", "fr"}
    assert pq.ParquetFile(shard).metadata.row_group(0).column(0).compression == "ZSTD"

    # Other readers see the same rows.
    import datasets  # deferred: the import is slow, and only this test needs it
    import pandas as pd

    loaded = datasets.load_dataset(
        "parquet", data_files={"train": str(shard)}, cache_dir=str(tmp_path / "hf")
    )["train"]
    assert loaded.num_rows == 4
    assert sorted(loaded["conversation_id"]) == sorted(r["conversation_id"] for r in rows)
    frame = pd.read_parquet(shard)
    assert frame["turn"].sum() == 3 + 1 + 1 + 1
    assert duckdb.sql(
        f"SELECT count(*), max(len(messages)) FROM read_parquet('{shard}')"  # noqa: S608
    ).fetchall() == [(4, 7)]

    # The manifest verifies, and a changed byte does not.
    assert verify(tmp_path / "a").ok
    cli = [sys.executable, "-m", "deploy.cli", "export", "verify", str(tmp_path / "a")]
    assert (await _run(cli)).returncode == 0

    # Reproducible: the same data, arguments and key give the same bytes.
    second = await export_dataset(clickhouse_url, tmp_path / "b", options(), record_key=RECORD_KEY)
    for name in ("data/train-00000-of-00001.parquet", "README.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    # Another recipient gets other conversation ids for the same conversations.
    other = await export_dataset(
        clickhouse_url, tmp_path / "c", options(recipient="Globex"), record_key=None
    )
    other_ids = set(pq.read_table(tmp_path / "c" / "data" / "train-00000-of-00001.parquet")
                    .column("conversation_id").to_pylist())  # fmt: skip
    assert other_ids.isdisjoint(r["conversation_id"] for r in rows)

    # The audit table says which request ids went to whom, with the key that traces them.
    audit = await pipeline.clickhouse.rows(
        "SELECT recipient, licence, profile, rows, request_ids, record_key, manifest_sha256 "
        "FROM export_audit FINAL WHERE export_id IN {ids:Array(String)} ORDER BY recipient",
        {"ids": [first.export_id, other.export_id]},
    )
    assert [(r[0], r[1], r[2], r[3]) for r in audit] == [
        ("Acme Research", "cc-by-nc-4.0", "open", 4),
        ("Globex", "cc-by-nc-4.0", "open", 4),
    ]
    assert captured["chat_leaf"] in audit[0][4]
    assert len(audit[0][4]) == 4
    assert audit[0][5] == RECORD_KEY.hex()
    assert audit[0][6] == first.manifest_sha256
    assert audit[1][5] == other.record_key

    # A leaked id names the export it came from (the query in docs/DATASETS.md).
    traced = await pipeline.clickhouse.rows(
        "SELECT export_id FROM export_audit FINAL WHERE kind = 'dataset' AND arrayExists("
        "id -> lower(hex(HMAC('SHA256', id, unhex(record_key)))) LIKE concat({leaked:String}, '%'),"
        " request_ids)",
        {"leaked": chat["conversation_id"]},
    )
    # Both exports made with that key, and no other.
    assert sorted(r[0] for r in traced) == sorted([first.export_id, second.export_id])


async def test_formats_profiles_resume_and_refusals(
    pipeline: Pipeline, tmp_path: Path, clickhouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    captured = await _capture(pipeline)
    selection = Selection(since=since)

    # Interrupted after its first shard, the same command resumes: the spool is not read again,
    # the finished shard is kept, and the result is the uninterrupted export's bytes.
    small = DatasetOptions(profile=Profile.named("open"), selection=selection, rows_per_shard=2)
    written: list[Path] = []

    class CrashAfterOne(ShardWriter):
        def close(self) -> None:
            if written:
                raise OSError("disk went away")
            super().close()
            written.append(self.path)

    monkeypatch.setattr(shard_files, "ShardWriter", CrashAfterOne)
    with pytest.raises(OSError, match="disk went away"):
        await export_dataset(clickhouse_url, tmp_path / "r", small, record_key=RECORD_KEY)
    first_shard = written[0].stat().st_mtime_ns
    # The shard that failed left no file behind, finished or temporary.
    assert sorted(p.name for p in (tmp_path / "r" / "data").iterdir()) == [written[0].name]
    monkeypatch.setattr(shard_files, "ShardWriter", ShardWriter)
    await export_dataset(clickhouse_url, tmp_path / "r", small, record_key=RECORD_KEY)
    await export_dataset(clickhouse_url, tmp_path / "s", small, record_key=RECORD_KEY)
    assert written[0].stat().st_mtime_ns == first_shard
    shards = sorted(p.name for p in (tmp_path / "r" / "data").iterdir())
    assert shards == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    for name in shards:
        assert (tmp_path / "r" / "data" / name).read_bytes() == (
            tmp_path / "s" / "data" / name
        ).read_bytes()
    assert not (tmp_path / "r" / ".state").exists()
    assert verify(tmp_path / "r").ok
    await export_dataset(
        clickhouse_url,
        tmp_path / "jsonl",
        DatasetOptions(profile=Profile.named("open"), selection=selection, fmt="jsonl"),
    )
    lines = gzip.decompress(
        (tmp_path / "jsonl" / "data" / "train-00000-of-00001.jsonl.gz").read_bytes()
    ).splitlines()
    assert len(lines) == 5  # near-duplicate threshold 0.85: the two travel plans differ enough
    assert all(set(json.loads(line)) == {"messages"} for line in lines)
    await export_dataset(
        clickhouse_url,
        tmp_path / "sharegpt",
        DatasetOptions(profile=Profile.named("licensed"), selection=selection, fmt="sharegpt",
                       test_fraction=0.5, seed=3),
    )  # fmt: skip
    shards = sorted(p.name for p in (tmp_path / "sharegpt" / "data").iterdir())
    assert shards == ["test-00000-of-00001.jsonl.gz", "train-00000-of-00001.jsonl.gz"]
    first = json.loads(gzip.decompress((tmp_path / "sharegpt" / "data" / shards[1]).read_bytes())
                       .splitlines()[0])  # fmt: skip
    assert {t["from"] for t in first["conversations"]} <= {"system", "human", "gpt", "tool"}
    assert verify(tmp_path / "sharegpt").ok

    legal = await export_dataset(
        clickhouse_url,
        tmp_path / "legal",
        DatasetOptions(profile=Profile.named("legal"), selection=selection),
    )
    table = pq.read_table(tmp_path / "legal" / "data" / "train-00000-of-00001.parquet")
    assert captured["chat_leaf"] in table.column("request_id").to_pylist()
    assert PLANTED["EMAIL"].encode() in _every_text(tmp_path / "legal")  # raw, as captured
    assert table.column("client_ip").to_pylist()[0] == "127.0.0.1"
    assert legal.counts.scrubbed == {}

    # The command line: the legal profile needs --raw; another process cannot open the
    # embedded directory this test process holds, and says what to do.
    cli = [sys.executable, "-m", "deploy.cli", "export", "dataset"]
    refused = await _run(
        [*cli, str(tmp_path / "x"), "--profile", "legal", "--clickhouse", clickhouse_url]
    )
    assert refused.returncode == 2
    assert "--raw" in refused.stderr
    held = await _run([*cli, str(tmp_path / "y"), "--clickhouse", clickhouse_url])
    assert held.returncode == 2
    assert "point --clickhouse at a ClickHouse server" in held.stderr
