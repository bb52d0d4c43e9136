"""Dataset files in Hugging Face's layout: ``data/{split}-{i:05d}-of-{n:05d}.{ext}``.

Three formats, one writer each, all reproducible byte for byte (same records in, same bytes out):

- ``parquet``: zstd, row groups of ``ROW_GROUP_ROWS`` so streaming readers (``datasets``
  streaming, DuckDB over HTTP) fetch little at a time; no timestamps in the metadata, and the
  writer's ``created_by`` is fixed by the pyarrow version.
- ``jsonl``: OpenAI's fine-tuning format, ``{"messages": [...]}`` a line, gzip with no name and
  mtime 0 in its header.
- ``sharegpt``: ``{"id", "conversations": [{"from": "system|human|gpt|tool", "value"}]}`` a line,
  gzip likewise.

A shard is written to a temporary name and renamed when complete, so a crash never leaves a
file that looks finished.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("parquet", "jsonl", "sharegpt")
EXTENSIONS = {"parquet": "parquet", "jsonl": "jsonl.gz", "sharegpt": "jsonl.gz"}
ROW_GROUP_ROWS = 1000
_SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt", "tool": "tool"}


def shard_name(split: str, index: int, count: int, fmt: str) -> str:
    return f"data/{split}-{index:05d}-of-{count:05d}.{EXTENSIONS[fmt]}"


def write_shard(path: Path, table: pa.Table, fmt: str) -> None:
    """Write one complete shard at ``path`` (atomically: temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    if fmt == "parquet":
        pq.write_table(
            table,
            temporary,
            compression="zstd",
            row_group_size=ROW_GROUP_ROWS,
            write_statistics=True,
            store_schema=True,
        )
    else:
        line = _openai_line if fmt == "jsonl" else _sharegpt_line
        with (
            temporary.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as out,
        ):
            # A row group's records at a time: a shard's records as Python objects are large.
            for batch in table.to_batches(max_chunksize=ROW_GROUP_ROWS):
                for record in batch.to_pylist():
                    out.write(orjson.dumps(line(record)) + b"\n")
    with temporary.open("rb") as f:
        os.fsync(f.fileno())
    temporary.replace(path)


def _openai_message(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message["role"], "content": message["content"]}
    if message.get("name"):
        out["name"] = message["name"]
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    if message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    return out


def _openai_line(record: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [_openai_message(m) for m in record["messages"]]}


def _sharegpt_line(record: dict[str, Any]) -> dict[str, Any]:
    turns = []
    for message in record["messages"]:
        value = message["content"]
        if message.get("tool_calls"):
            value = (value + "\n" if value else "") + orjson.dumps(message["tool_calls"]).decode()
        turns.append(
            {"from": _SHAREGPT_ROLES.get(message["role"], message["role"]), "value": value}
        )
    return {"id": record["conversation_id"], "conversations": turns}
