"""Shards written as records arrive: the bytes of writing the whole shard at once, memory of a
row group, and nothing left behind by a failure."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consumers.export.shards import ROW_GROUP_ROWS, ShardWriter

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def _records(start: int, count: int, text_bytes: int = 40) -> pa.Table:
    ids = range(start, start + count)
    return pa.table(
        {
            "conversation_id": pa.array([f"c{i:08d}" for i in ids]),
            "messages": pa.array(
                [
                    [
                        {"role": "user", "content": f"question {i} " + "x" * text_bytes},
                        {"role": "assistant", "content": f"answer {i}"},
                    ]
                    for i in ids
                ],
                MESSAGES,
            ),
            "turn": pa.array([i % 7 for i in ids], pa.int32()),
        }
    )


def _pieces(sizes: list[int]) -> list[pa.Table]:
    out, start = [], 0
    for size in sizes:
        out.append(_records(start, size))
        start += size
    return out


def test_a_parquet_shard_written_in_pieces_is_the_whole_shard_written_at_once(
    tmp_path: Path,
) -> None:
    pieces = _pieces([7, 993, 1, 1499, 500])  # 3,000 rows, boundaries off the row groups
    whole = pa.concat_tables(pieces)
    reference = tmp_path / "reference.parquet"
    pq.write_table(
        whole,
        reference,
        compression="zstd",
        row_group_size=ROW_GROUP_ROWS,
        write_statistics=True,
        store_schema=True,
    )
    with ShardWriter(tmp_path / "data" / "train.parquet", "parquet", whole.schema) as shard:
        for piece in pieces:
            shard.write(piece)
    written = tmp_path / "data" / "train.parquet"
    assert written.read_bytes() == reference.read_bytes()
    metadata = pq.ParquetFile(written).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        1000,
        1000,
        1000,
    ]
    assert sorted(p.name for p in written.parent.iterdir()) == ["train.parquet"]


@pytest.mark.parametrize("fmt", ["jsonl", "sharegpt"])
def test_a_jsonl_shard_written_in_pieces_is_one_gzip_stream_of_every_record(
    tmp_path: Path, fmt: str
) -> None:
    pieces = _pieces([3, 1200, 299])
    path = tmp_path / f"train.{fmt}.gz"
    with ShardWriter(path, fmt, pieces[0].schema) as shard:
        for piece in pieces:
            shard.write(piece)
    lines = [orjson.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    assert len(lines) == 1502
    if fmt == "jsonl":
        assert lines[1500] == {
            "messages": [
                {"role": "user", "content": "question 1500 " + "x" * 40},
                {"role": "assistant", "content": "answer 1500"},
            ]
        }
    else:
        assert lines[1500]["id"] == "c00001500"
        assert [t["from"] for t in lines[1500]["conversations"]] == ["human", "gpt"]
    # Reproducible: no name or time in the gzip header.
    with ShardWriter(tmp_path / "again.gz", fmt, pieces[0].schema) as again:
        again.write(pa.concat_tables(pieces))
    assert (tmp_path / "again.gz").read_bytes() == path.read_bytes()


def test_memory_holds_a_row_group_not_the_shard(tmp_path: Path) -> None:
    """40 row groups of ~1 MB each: what the writer holds never grows past about one."""
    schema = _records(0, 1, text_bytes=1000).schema
    peak = 0
    with ShardWriter(tmp_path / "big.parquet", "parquet", schema) as shard:
        before = pa.total_allocated_bytes()
        for n in range(40 * ROW_GROUP_ROWS // 250):
            shard.write(_records(n * 250, 250, text_bytes=1000))
            peak = max(peak, pa.total_allocated_bytes() - before)
    row_group_bytes = _records(0, ROW_GROUP_ROWS, text_bytes=1000).nbytes
    assert peak < 3 * row_group_bytes  # a shard's worth would be 40 times one
    assert pq.ParquetFile(tmp_path / "big.parquet").metadata.num_rows == 40 * ROW_GROUP_ROWS


def _write_then_fail(path: Path, piece: pa.Table) -> None:
    with ShardWriter(path, "parquet", piece.schema) as shard:
        shard.write(piece)
        raise RuntimeError("interrupted")


def test_a_failure_while_writing_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "train.parquet"
    with pytest.raises(RuntimeError, match="interrupted"):
        _write_then_fail(path, _records(0, 1500))
    assert list(path.parent.iterdir()) == []
