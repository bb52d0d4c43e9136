"""The numpy fold on hand-made keys: prefixes, a branch, duplicates, min_turns, timing lookups."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from consumers.export import fold as fold_module
from consumers.export.fold import Fold, FoldResult, batch_bounds, lender_ids, turn_timing

SYSTEM, A_ASK, A_ASK2, B_ASK2, D_ASK, D_ASK2 = 1, 2, 3, 4, 5, 6
A1, A1_REGENERATED, A2, B2, D1, D2, E = 101, 102, 103, 104, 105, 106, 107

# (request id, own key, prefix hashes of the request, user turns, ttft, streamed, loaded ms)
EXCHANGES: list[tuple[str, int, list[int], int, float | None, bool, int]] = [
    ("r01", A1, [SYSTEM, A_ASK], 1, 10.0, True, 1_000),
    ("r02", A2, [SYSTEM, A_ASK, A1, A_ASK2], 2, 20.0, True, 2_000),
    # The first answer regenerated, then continued: a branch, a second conversation.
    ("r03", A1_REGENERATED, [SYSTEM, A_ASK], 1, 30.0, False, 3_000),
    ("r04", B2, [SYSTEM, A_ASK, A1_REGENERATED, B_ASK2], 2, 40.0, True, 1_764_590_400_123),
    # The same question and answer twice, then continued: the first one lends its timing.
    ("r05", D1, [D_ASK], 1, None, True, 5_000),
    ("r06", D1, [D_ASK], 1, 60.0, False, 6_000),
    ("r07", D2, [D_ASK, D1, D_ASK2], 2, 70.0, True, 7_000),
    # A single-turn conversation sent twice: two leaves with one key (exact dedup drops one).
    ("r08", E, [SYSTEM, D_ASK2], 1, 80.0, True, 8_000),
    ("r09", E, [SYSTEM, D_ASK2], 1, 90.0, True, 9_000),
]


def _batch(rows: list[tuple[str, int, list[int], int, float | None, bool, int]]) -> pa.RecordBatch:
    names = ["request_id", "own_key", "prefixes", "user_turns", "ttft_ms", "stream", "loaded_ms"]
    types = [pa.string(), pa.uint64(), pa.list_(pa.uint64()), pa.uint32(), pa.float64(),
             pa.bool_(), pa.int64()]  # fmt: skip
    columns = [pa.array([row[i] for row in rows], t) for i, t in enumerate(types)]
    # A body's size: 100 bytes per user turn.
    sizes = pa.array([100 * row[3] for row in rows], pa.uint32())
    return pa.RecordBatch.from_arrays([*columns, sizes], names=[*names, "body_bytes"])


def _folded(min_turns: int) -> FoldResult:
    fold = Fold(min_turns=min_turns)
    for start in range(0, len(EXCHANGES), 4):  # batches that split a conversation
        fold.add(_batch(EXCHANGES[start : start + 4]))
    return fold.finish()


@pytest.mark.parametrize("merge_every", [1 << 20, 3])
def test_leaves_counts_and_snapshot(monkeypatch: pytest.MonkeyPatch, merge_every: int) -> None:
    monkeypatch.setattr(fold_module, "_MERGE_EVERY", merge_every)
    result = _folded(min_turns=1)
    assert [i.decode() for i in result.leaves] == ["r02", "r04", "r07", "r08", "r09"]
    assert result.leaf_bytes.tolist() == [200, 200, 200, 100, 100]
    assert (result.matched, result.folded) == (9, 4)
    assert result.newest_request_id == "r09"
    assert result.newest_load == "2025-12-01 12:00:00.123"


def test_min_turns_drops_short_leaves_but_not_the_counts() -> None:
    result = _folded(min_turns=2)
    assert [i.decode() for i in result.leaves] == ["r02", "r04", "r07"]
    assert (result.matched, result.folded) == (9, 4)


def test_an_empty_selection_folds_to_nothing() -> None:
    result = Fold(min_turns=1).finish()
    assert (result.matched, result.folded, len(result.leaves)) == (0, 0, 0)
    assert (result.newest_request_id, result.newest_load) == ("", "1970-01-01 00:00:00.000")
    timing = turn_timing(pa.array([[2]]), pa.array([[A1]], pa.list_(pa.uint64())), result, {})
    assert timing.to_pylist()[0][0]["captured"] is False


def test_turn_timing_comes_from_the_first_exchange_with_the_key() -> None:
    result = _folded(min_turns=1)
    # Leaves r02 (answer at 3), r04 (branch: answer at 3), r07 (answer at 2), r08 (none), and
    # an answer nobody captured (key 999).
    positions = pa.array([[3], [3], [2], [], [2]], pa.list_(pa.int32()))
    prefixes = pa.array([[A1], [A1_REGENERATED], [D1], [], [999]], pa.list_(pa.uint64()))
    assert lender_ids(prefixes, result) == ["r01", "r03", "r05"]
    chunks = {b"r01": [1.5, 2.5], b"r03": [9.0], b"r05": [4.0]}
    rows: list[list[dict[str, Any]]] = turn_timing(positions, prefixes, result, chunks).to_pylist()
    assert [[(e["position"], e["captured"]) for e in row] for row in rows] == [
        [(3, True)], [(3, True)], [(2, True)], [], [(2, False)],
    ]  # fmt: skip
    first, branch, duplicate = rows[0][0], rows[1][0], rows[2][0]
    assert (first["streamed"], first["ttft_ms"], first["chunk_offsets_ms"]) == (
        True, 10.0, [1.5, 2.5],
    )  # fmt: skip
    assert (branch["streamed"], branch["ttft_ms"]) == (False, 30.0)
    # r05 and r06 share the key: r05 (the first) lends its timing, its null TTFT included.
    assert (duplicate["streamed"], duplicate["ttft_ms"], duplicate["chunk_offsets_ms"]) == (
        True, None, [4.0],
    )  # fmt: skip


def test_request_ids_of_any_length_come_back_whole() -> None:
    fold = Fold(min_turns=1)
    ids = ["r1", "r10", "a-much-longer-request-id"]
    fold.add(_batch([(rid, 200 + i, [i], 1, None, False, 0) for i, rid in enumerate(ids)]))
    sliced = [("s1", 300, [], 1, None, False, 0), ("s2", 301, [], 1, None, False, 0)]
    fold.add(_batch(sliced).slice(1, 1))  # a batch that starts inside its buffers
    assert [i.decode() for i in fold.finish().leaves] == [*ids, "s2"]


def test_batches_are_bounded_by_rows_and_bytes() -> None:
    sizes = np.array([10, 10, 10, 50, 5, 5, 5, 5, 5], dtype=np.uint32)
    bounds = batch_bounds(sizes, max_rows=4, max_bytes=30)
    # A leaf larger than the limit is a batch of its own; none is split or skipped.
    assert [list(b) for b in bounds] == [[0, 1, 2], [3], [4, 5, 6, 7], [8]]
    assert batch_bounds(np.zeros(0, dtype=np.uint32), max_rows=4, max_bytes=30) == []
