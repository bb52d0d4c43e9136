"""Dataset files in Hugging Face's layout: ``data/{split}-{i:05d}-of-{n:05d}.{ext}``.

Three formats, one writer each, all reproducible byte for byte (same records in, same bytes out):

- ``parquet``: zstd, row groups of ``ROW_GROUP_ROWS`` so streaming readers (``datasets``
  streaming, DuckDB over HTTP) fetch little at a time; no timestamps in the metadata, and the
  writer's ``created_by`` is fixed by the pyarrow version.
- ``jsonl``: OpenAI's fine-tuning format, ``{"messages": [...]}`` a line, gzip with no name and
  mtime 0 in its header.
- ``sharegpt``: ``{"id", "conversations": [{"from": "system|human|gpt|tool", "value"}]}`` a line,
  gzip likewise.

A shard is written as its records arrive, a row group at a time (``ShardWriter``), so memory
holds one row group, not a shard (a shard of long conversations is gigabytes); the bytes are
those of writing the whole shard at once. It goes to a temporary name and is renamed when
complete, so a crash never leaves a file that looks finished.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("parquet", "jsonl", "sharegpt")
EXTENSIONS = {"parquet": "parquet", "jsonl": "jsonl.gz", "sharegpt": "jsonl.gz"}
ROW_GROUP_ROWS = 1000
_SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt", "tool": "tool"}


def shard_name(split: str, index: int, count: int, fmt: str) -> str:
    return f"data/{split}-{index:05d}-of-{count:05d}.{EXTENSIONS[fmt]}"


class ShardWriter:
    """One shard, written a row group at a time as tables are added; ``close()`` (or leaving the
    ``with`` block) completes it: fsync, then the rename to its name. An exception in the block
    removes the temporary file instead."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._temporary = path.with_name(f".{path.name}.tmp")
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._raw: IO[bytes] | None = None
        self._gzip: gzip.GzipFile | None = None
        if fmt == "parquet":
            self._parquet = pq.ParquetWriter(
                self._temporary,
                schema,
                compression="zstd",
                write_statistics=True,
                store_schema=True,
            )
        else:
            self._raw = self._temporary.open("wb")
            self._gzip = gzip.GzipFile(
                filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6
            )
        self._line = _openai_line if fmt == "jsonl" else _sharegpt_line

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def write(self, table: pa.Table) -> None:
        """Add records; every full row group goes to the file."""
        while table.num_rows:
            take = min(ROW_GROUP_ROWS - self._pending_rows, table.num_rows)
            self._pending.append(table.slice(0, take))
            self._pending_rows += take
            table = table.slice(take)
            if self._pending_rows == ROW_GROUP_ROWS:
                self._write_group()

    def _write_group(self) -> None:
        group = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        if self._parquet is not None:
            self._parquet.write_table(group, row_group_size=ROW_GROUP_ROWS)
            return
        assert self._gzip is not None
        for record in group.to_pylist():
            self._gzip.write(orjson.dumps(self._line(record)) + b"\n")

    def close(self) -> None:
        if self._pending_rows:
            self._write_group()
        self._close_files()
        with self._temporary.open("rb") as f:
            os.fsync(f.fileno())
        self._temporary.replace(self.path)

    def abort(self) -> None:
        self._pending, self._pending_rows = [], 0
        self._close_files()
        self._temporary.unlink(missing_ok=True)

    def _close_files(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._gzip is not None:
            self._gzip.close()
            self._gzip = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None


class SplitShards:
    """One split's records into shards of ``rows_per_shard`` records, each written as its records
    come (``ShardWriter``). A shard an earlier run completed (``finished(name)``, and its file is
    there) is not written again; ``done(name)`` is told of each shard completed here."""

    def __init__(
        self,
        destination: Path,
        split: str,
        rows: int,
        *,
        rows_per_shard: int,
        fmt: str,
        finished: Callable[[str], bool],
        done: Callable[[str], None],
    ) -> None:
        self._destination, self._split, self._fmt = destination, split, fmt
        self._rows_per_shard = rows_per_shard
        self._count = math.ceil(rows / rows_per_shard)
        self._finished, self._done = finished, done
        self._writer: ShardWriter | None = None
        self._rows = 0  # in the current shard
        self.names: list[str] = []

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._rows == 0:
                self._open(table.schema)
            take = min(self._rows_per_shard - self._rows, table.num_rows)
            if self._writer is not None:
                self._writer.write(table.slice(0, take))
            self._rows += take
            table = table.slice(take)
            if self._rows == self._rows_per_shard:
                self.finish()

    def _open(self, schema: pa.Schema) -> None:
        name = shard_name(self._split, len(self.names), self._count, self._fmt)
        if not (self._finished(name) and (self._destination / name).exists()):
            self._writer = ShardWriter(self._destination / name, self._fmt, schema)
        self.names.append(name)

    def finish(self) -> None:
        """Complete the current shard, if one is open."""
        if self._rows == 0:
            return
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._done(self.names[-1])
        self._rows = 0

    def abort(self) -> None:
        """Drop a shard left incomplete (an error): its temporary file goes, nothing is done."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def write_shard(path: Path, table: pa.Table, fmt: str) -> None:
    """Write one complete shard at ``path`` from a table (atomically, as ``ShardWriter``)."""
    with ShardWriter(path, fmt, table.schema) as shard:
        shard.write(table)


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
