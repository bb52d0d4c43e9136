"""The spool's batches are BATCH_ROWS long whatever sizes the records are appended in."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from consumers.export.spool import BATCH_ROWS, SPOOL_SCHEMA, SpoolWriter, read_spool


def _records(start: int, count: int) -> pa.RecordBatch:
    ids = pa.array([f"r{i:06d}" for i in range(start, start + count)], pa.string())
    arrays = [
        ids if f.name == "source_request_id" else pa.nulls(count, f.type) for f in SPOOL_SCHEMA
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=SPOOL_SCHEMA)


def test_batches_are_cut_to_a_fixed_size_and_keep_the_order(tmp_path: Path) -> None:
    path = tmp_path / "spool.arrows"
    sizes = [1500, 700, 3 * BATCH_ROWS, 1, 0, 299]
    with SpoolWriter(path) as spool:
        start = 0
        for size in sizes:
            spool.append(_records(start, size))
            start += size
    batches = list(read_spool(path))
    total = sum(sizes)
    assert [b.num_rows for b in batches] == [BATCH_ROWS] * (total // BATCH_ROWS) + [
        total % BATCH_ROWS
    ]
    ids = [i for b in batches for i in b.column("source_request_id").to_pylist()]
    assert ids == [f"r{i:06d}" for i in range(total)]


def test_an_empty_spool_is_a_valid_stream(tmp_path: Path) -> None:
    path = tmp_path / "spool.arrows"
    with SpoolWriter(path):
        pass
    assert list(read_spool(path)) == []
