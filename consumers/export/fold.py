"""The fold of a dataset's exchanges into conversations, with numpy: which exchanges are leaves.

Pure. ``Fold`` takes the narrow rows of ``selection.fold_sql`` batch by batch, in request-id
order, and keeps a few tens of bytes per exchange in numpy arrays (never a Python object per
row): its own key, request id, user turns, TTFT and whether it streamed, and the distinct prefix
hashes seen so far. ``finish`` decides:

- the leaves: exchanges whose own key is no other exchange's prefix, with at least
  ``min_turns`` user turns, in request-id order;
- the exchanges that fold into a longer one, and the snapshot's identity (how many matched, the
  newest request id and load time);
- a lookup from a folded exchange's own key to the exchange that lends its timing to the
  conversations it is a prefix of: the first in request-id order where several share the key.

``batch_bounds`` cuts the leaves into batches for pass B; ``turn_timing`` then builds, per
batch, the per-answer timing column the records read (``lender_ids``: whose chunk offsets it
needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from consumers.export.records import TURN_TIMING

# Prefix hashes gathered before they are merged into the sorted distinct set: chats resend their
# history, so most of a batch's prefixes are already there, and the merge keeps the set small.
_MERGE_EVERY = 1 << 20
# The engine's answer for the newest load time of an empty selection (``max`` of no rows).
_NO_LOAD = "1970-01-01 00:00:00.000"
# Per earlier answer: its position in the conversation, captured, streamed, TTFT, chunk offsets.
TIMING_ENTRY = pa.struct([("position", pa.int64()), *list(TURN_TIMING)[1:]])


@dataclass(slots=True)
class FoldResult:
    matched: int
    folded: int
    newest_request_id: str
    newest_load: str  # as the engine prints a DateTime64(3): "2026-11-01 12:00:00.123"
    leaves: np.ndarray  # request ids (fixed-width bytes), in request-id order
    leaf_bytes: np.ndarray  # the size of each leaf's request body and answer, bytes
    keys: np.ndarray  # sorted distinct own keys of the folded exchanges
    lender_ids: np.ndarray  # per key: the request id of the first exchange with it
    lender_ttft: np.ndarray  # its TTFT (0 where null: see ``lender_ttft_null``)
    lender_ttft_null: np.ndarray
    lender_streamed: np.ndarray


class Fold:
    """Collects ``selection.fold_sql``'s batches (in request-id order); ``finish`` folds."""

    def __init__(self, *, min_turns: int) -> None:
        self.min_turns = min_turns
        self._ids: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._enough_turns: list[np.ndarray] = []
        self._body_bytes: list[np.ndarray] = []
        self._ttft: list[np.ndarray] = []
        self._ttft_null: list[np.ndarray] = []
        self._streamed: list[np.ndarray] = []
        self._prefixes = np.zeros(0, dtype=np.uint64)  # sorted, distinct
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self._newest_load_ms: int | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        column = batch.column
        self._ids.append(_fixed_width(column("request_id")))
        self._keys.append(column("own_key").to_numpy().astype(np.uint64))
        turns = column("user_turns").to_numpy()
        self._enough_turns.append(turns >= self.min_turns)
        self._body_bytes.append(column("body_bytes").to_numpy().astype(np.uint32))
        ttft = column("ttft_ms")
        self._ttft.append(ttft.fill_null(0.0).to_numpy().astype(np.float64))
        self._ttft_null.append(ttft.is_null().to_numpy(zero_copy_only=False))
        self._streamed.append(column("stream").to_numpy(zero_copy_only=False).astype(bool))
        newest = pc.max(column("loaded_ms")).as_py()
        if newest is not None and (self._newest_load_ms is None or newest > self._newest_load_ms):
            self._newest_load_ms = newest
        prefixes = pc.list_flatten(column("prefixes")).to_numpy().astype(np.uint64)
        self._pending.append(prefixes)
        self._pending_size += len(prefixes)
        if self._pending_size >= _MERGE_EVERY:
            self._merge()

    def _merge(self) -> None:
        self._prefixes = np.unique(np.concatenate([self._prefixes, *self._pending]))
        self._pending, self._pending_size = [], 0

    def finish(self) -> FoldResult:
        self._merge()
        ids = _concatenate(self._ids, np.dtype("S1"))
        keys = _concatenate(self._keys, np.dtype(np.uint64))
        enough_turns = _concatenate(self._enough_turns, np.dtype(bool))
        body_bytes = _concatenate(self._body_bytes, np.dtype(np.uint32))
        ttft = _concatenate(self._ttft, np.dtype(np.float64))
        ttft_null = _concatenate(self._ttft_null, np.dtype(bool))
        streamed = _concatenate(self._streamed, np.dtype(bool))
        self._ids = self._keys = self._enough_turns = self._body_bytes = []
        self._ttft = self._ttft_null = self._streamed = []
        folded = _members(keys, self._prefixes)
        self._prefixes = np.zeros(0, dtype=np.uint64)
        # The first exchange of each folded key: a stable sort keeps request-id order in a key.
        folded_at = np.flatnonzero(folded)
        order = folded_at[np.argsort(keys[folded_at], kind="stable")]
        distinct, first = np.unique(keys[order], return_index=True)
        lenders = order[first]
        newest_load = (
            datetime.fromtimestamp(self._newest_load_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.")
            + f"{self._newest_load_ms % 1000:03d}"
            if self._newest_load_ms is not None
            else _NO_LOAD
        )
        return FoldResult(
            matched=len(keys),
            folded=int(folded.sum()),
            newest_request_id=ids[-1].decode() if len(ids) else "",
            newest_load=newest_load,
            leaves=ids[~folded & enough_turns],
            leaf_bytes=body_bytes[~folded & enough_turns],
            keys=distinct,
            lender_ids=ids[lenders],
            lender_ttft=ttft[lenders],
            lender_ttft_null=ttft_null[lenders],
            lender_streamed=streamed[lenders],
        )


def batch_bounds(leaf_bytes: np.ndarray, *, max_rows: int, max_bytes: int) -> list[range]:
    """Consecutive batches of leaves, each at most ``max_rows`` leaves and ``max_bytes`` of
    request bodies and answers (at least one leaf): long conversations are read few at a time."""
    bounds: list[range] = []
    start = 0
    while start < len(leaf_bytes):
        sizes = np.cumsum(leaf_bytes[start : start + max_rows], dtype=np.uint64)
        fits = int(np.searchsorted(sizes, np.uint64(max_bytes), side="right"))
        bounds.append(range(start, start + max(fits, 1)))
        start += max(fits, 1)
    return bounds


def lenders(prefixes: pa.ListArray, fold: FoldResult) -> np.ndarray:
    """Per earlier answer of a batch's leaves (``assistant_prefixes`` of ``selection.leaves_sql``,
    flattened): the index of the exchange that produced it in ``fold``'s lookup, or -1."""
    keys = pc.list_flatten(prefixes).to_numpy().astype(np.uint64)
    at = np.searchsorted(fold.keys, keys)
    return np.where(_members(keys, fold.keys), at, -1).astype(np.int64)


def turn_timing(
    positions: pa.ListArray,
    prefixes: pa.ListArray,
    fold: FoldResult,
    chunks: dict[bytes, list[float]],
) -> pa.Array:
    """Per leaf, each earlier answer's position and timing from the exchange that produced it.

    ``positions``/``prefixes``: per leaf, its assistant messages' positions and prefix hashes
    (``selection.leaves_sql``); ``chunks``: chunk offsets by request id (absent: none captured).
    """
    at = lenders(prefixes, fold)
    captured = at >= 0
    if len(fold.keys):
        safe = np.maximum(at, 0)
        streamed = captured & fold.lender_streamed[safe]
        ttft, ttft_null = fold.lender_ttft[safe], ~captured | fold.lender_ttft_null[safe]
        ids = fold.lender_ids[safe]
        offsets = [chunks.get(ids[i], []) if found else [] for i, found in enumerate(captured)]
    else:
        streamed, ttft, ttft_null = captured, np.zeros(len(at)), ~captured
        offsets = [[] for _ in range(len(at))]
    entries = pa.StructArray.from_arrays(
        [
            pc.list_flatten(positions).cast(pa.int64()),
            pa.array(captured),
            pa.array(streamed),
            pa.array(ttft, pa.float64(), mask=ttft_null),
            pa.array(offsets, pa.list_(pa.float64())),
        ],
        fields=list(TIMING_ENTRY),
    )
    starts = prefixes.offsets
    return pa.ListArray.from_arrays(pc.subtract(starts, starts[0]), entries)


def lender_ids(prefixes: pa.ListArray, fold: FoldResult) -> list[str]:
    """The request ids of the exchanges that produced the earlier answers of a batch's leaves."""
    at = lenders(prefixes, fold)
    return [i.decode() for i in np.unique(fold.lender_ids[at[at >= 0]])]


def _members(values: np.ndarray, sorted_distinct: np.ndarray) -> np.ndarray:
    """Whether each value is in ``sorted_distinct``: a binary search, no copy of either (unlike
    ``np.isin``, which sorts both together)."""
    if not len(sorted_distinct):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_distinct, values), len(sorted_distinct) - 1)
    found: np.ndarray = sorted_distinct[at] == values
    return found


def _fixed_width(ids: pa.Array) -> np.ndarray:
    """Request ids as fixed-width bytes (``S36`` for the proxy's UUIDs): one array, no objects."""
    ids = ids.cast(pa.binary())
    lengths = pc.binary_length(ids)
    width = pc.max(lengths).as_py()
    if ids.null_count == 0 and width and pc.min(lengths).as_py() == width:
        # All the same length (the proxy's ids): the values buffer is already the array.
        start = np.frombuffer(ids.buffers()[1], dtype=np.int32)[ids.offset]
        return np.frombuffer(
            ids.buffers()[2], dtype=f"S{width}", count=len(ids), offset=int(start)
        ).copy()
    return np.array(ids.to_pylist(), dtype=np.bytes_)


def _concatenate(parts: list[np.ndarray], empty: np.dtype[Any]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=empty)
