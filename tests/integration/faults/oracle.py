"""The common oracle of the fault tests: what the proxy served vs what ClickHouse holds.

``expected`` = the request ids the proxy handed out (its ``x-logorhythms-request-id`` response
header). For those ids: ``loss`` = expected ids without a completed event; ``dup_rows_raw`` = extra
rows before ReplacingMergeTree collapsed them (reported, may be > 0 after a redelivery with
different batch boundaries); ``dup_rows_final`` = extra rows even with FINAL (must be 0);
``broken_chunks`` = exchanges whose stored chunk seqs are not exactly 1..chunk_count.
The SQL is the reconciliation query in docs/OPERATIONS.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from consumers.clickhouse.client import ClickHouse

Query = Callable[[str, dict[str, Any]], Awaitable[list[tuple[Any, ...]]]]

RECONCILE_SQL = """
SELECT
    (SELECT uniqExact(request_id) FROM requests_raw WHERE request_id IN {ids:Array(String)}),
    (SELECT uniqExact(request_id) FROM completions_raw WHERE request_id IN {ids:Array(String)}),
    (SELECT count() FROM completions_raw WHERE request_id IN {ids:Array(String)})
      + (SELECT count() FROM requests_raw WHERE request_id IN {ids:Array(String)}),
    (SELECT count() FROM completions_raw FINAL WHERE request_id IN {ids:Array(String)})
      + (SELECT count() FROM requests_raw FINAL WHERE request_id IN {ids:Array(String)}),
    (SELECT count() FROM exchanges FINAL WHERE request_id IN {ids:Array(String)}),
    (SELECT count() FROM chunks_raw WHERE request_id IN {ids:Array(String)})
      - (SELECT count() FROM chunks_raw FINAL WHERE request_id IN {ids:Array(String)}),
    (SELECT count() FROM
        (SELECT request_id, chunk_count FROM completions_raw FINAL
         WHERE request_id IN {ids:Array(String)}) AS c
        LEFT JOIN
        (SELECT request_id, uniqExact(seq) AS n, max(seq) AS top, min(seq) AS low
         FROM chunks_raw FINAL WHERE request_id IN {ids:Array(String)} GROUP BY request_id) AS k
        USING request_id
     WHERE k.n != c.chunk_count OR k.top != c.chunk_count OR (c.chunk_count > 0 AND k.low != 1))
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciliation:
    expected: int
    with_request: int
    with_terminal: int
    raw_rows: int  # requests_raw + completions_raw rows, before collapsing
    final_rows: int  # the same with FINAL
    exchanges: int
    chunk_dups_raw: int
    broken_chunks: int

    @property
    def loss(self) -> int:
        return self.expected - min(self.with_request, self.with_terminal)

    @property
    def dup_rows_raw(self) -> int:
        """Rows beyond one per event, before ReplacingMergeTree collapses them."""
        return self.raw_rows - self.with_request - self.with_terminal + self.chunk_dups_raw

    @property
    def dup_rows_final(self) -> int:
        """Rows beyond one per event even with FINAL: must be 0."""
        return self.final_rows - self.with_request - self.with_terminal

    @property
    def exact(self) -> bool:
        """Every expected exchange is there once (with FINAL), with contiguous chunks."""
        return (
            self.loss == 0
            and self.dup_rows_final == 0
            and self.exchanges == self.expected
            and self.broken_chunks == 0
        )


async def reconcile(query: Query | ClickHouse, ids: Collection[str]) -> Reconciliation:
    run = query.rows if isinstance(query, ClickHouse) else query
    [row] = await run(RECONCILE_SQL, {"ids": list(ids)})
    return Reconciliation(
        expected=len(set(ids)),
        with_request=int(row[0]),
        with_terminal=int(row[1]),
        raw_rows=int(row[2]),
        final_rows=int(row[3]),
        exchanges=int(row[4]),
        chunk_dups_raw=int(row[5]),
        broken_chunks=int(row[6]),
    )


async def wait_reconciled(
    query: Query | ClickHouse, ids: Collection[str], *, timeout_s: float = 60.0
) -> Reconciliation:
    """Poll until every expected exchange is in ClickHouse, or the deadline; returns the last
    reconciliation either way (the test asserts on it and prints it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await reconcile(query, ids)
        if result.exact or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.25)
