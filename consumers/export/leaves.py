"""A dataset's leaves out of ClickHouse, with memory bounded by a batch, not by the selection.

Pass A (``fold_exchanges``) streams the selection's exchanges as narrow rows in request-id order
(``selection.fold_sql``: keys and hashes, no bodies, no joins) into ``fold.Fold``, which decides
the leaves with numpy. Pass B (``leaf_batches``) reads the leaves in batches
by request id (a primary-key lookup), with the chunk offsets of each and of the exchanges that
produced their earlier answers, and hands them on as the Arrow batches ``records.build_batch``
reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pyarrow as pa

from consumers.clickhouse.client import ClickHouse
from consumers.export.fold import Fold, FoldResult, batch_bounds, lender_ids, turn_timing
from consumers.export.selection import LEAF_COLUMNS, Selection, chunks_sql, fold_sql, leaves_sql

# Exchanges per pass-A query: the embedded engine holds memory for a streamed result until the
# query ends (about half the result's size), so the fold reads the selection in pages.
FOLD_PAGE_ROWS = 100_000
# Leaves read per pass-B query, at most, and the size of their request bodies and answers: a
# batch's bodies and records are what pass B holds in memory (the byte bound keeps a batch of long
# conversations small). Each query reads whole granules (8,192 rows) around its ids and has a
# fixed cost, so larger batches cost a little less CPU per leaf (pass B over 50,000 short leaves:
# 3.7 CPU-s in batches of 2,000, 3.3 in batches of 8,192, for ~40 MB more peak at 1 M exchanges).
LEAVES_PER_QUERY = 2000
LEAF_BYTES_PER_QUERY = 16 << 20
# One thread: the query's memory, not its speed, is what matters here (the engine may run in
# this process), and the Python side is the bottleneck.
_READ_SETTINGS = {
    "output_format_arrow_string_as_string": 1,
    "max_block_size": 4096,
    "max_threads": 1,
}


async def fold_exchanges(clickhouse: ClickHouse, selection: Selection) -> FoldResult:
    """Pass A: the selection's exchanges, narrow, page by page in request-id order, folded with
    numpy."""
    fold = Fold(min_turns=selection.min_turns)
    after: str | None = None
    while True:
        sql, params = fold_sql(selection, after=after)
        rows, last = 0, ""

        def add(batch: pa.RecordBatch) -> None:
            nonlocal rows, last
            fold.add(batch)
            rows += batch.num_rows
            if batch.num_rows:
                last = batch.column("request_id")[-1].as_py()

        await clickhouse.arrow_batches(
            sql, add, parameters={**params, "page": FOLD_PAGE_ROWS}, settings=_READ_SETTINGS
        )
        await release_memory(clickhouse)
        if rows < FOLD_PAGE_ROWS:
            return fold.finish()
        after = last


async def _leaves(
    clickhouse: ClickHouse, ids: list[str], fold: FoldResult
) -> pa.RecordBatch | None:
    """Pass B: the rows of a batch of leaves, with their chunk offsets and per-turn timing, as
    ``records.build_batch`` reads them; None when none of them is there any more."""
    parts: list[pa.RecordBatch] = []
    await clickhouse.arrow_batches(
        leaves_sql(), parts.append, parameters={"ids": ids}, settings=_READ_SETTINGS
    )
    rows = pa.Table.from_batches(parts).combine_chunks() if parts else None
    if rows is None or not rows.num_rows:
        return None
    prefixes = rows.column("assistant_prefixes").chunk(0)
    wanted = sorted({*rows.column("request_id").to_pylist(), *lender_ids(prefixes, fold)})
    chunks = {
        request_id.encode(): offsets
        for request_id, offsets in await clickhouse.rows(chunks_sql(), {"ids": wanted})
    }
    own = [chunks.get(r.encode(), []) for r in rows.column("request_id").to_pylist()]
    timing = turn_timing(rows.column("assistant_positions").chunk(0), prefixes, fold, chunks)
    return pa.RecordBatch.from_arrays(
        [
            *(rows.column(name).chunk(0) for name in LEAF_COLUMNS),
            pa.array(own, pa.list_(pa.float64())),
            timing,
        ],
        names=[*LEAF_COLUMNS, "chunk_offsets_ms", "turn_timing"],
    )


async def leaf_batches(clickhouse: ClickHouse, fold: FoldResult) -> AsyncIterator[pa.RecordBatch]:
    """Pass B: the leaves in request-id order, in batches of at most ``LEAVES_PER_QUERY`` leaves
    and ``LEAF_BYTES_PER_QUERY`` of bodies and answers."""
    bounds = batch_bounds(
        fold.leaf_bytes, max_rows=LEAVES_PER_QUERY, max_bytes=LEAF_BYTES_PER_QUERY
    )
    for batch_range in bounds:
        ids = [i.decode() for i in fold.leaves[batch_range.start : batch_range.stop]]
        batch = await _leaves(clickhouse, ids, fold)
        await release_memory(clickhouse)
        if batch is not None:
            yield batch


async def release_memory(clickhouse: ClickHouse) -> None:
    """Return what the last query freed to the system, the engine's and Arrow's: both allocators
    keep freed memory for reuse, and between the export's queries that was most of its resident
    memory above what it holds (at 1 M exchanges, ~150 MB of the engine's)."""
    await clickhouse.release_memory()
    pa.default_memory_pool().release_unused()
