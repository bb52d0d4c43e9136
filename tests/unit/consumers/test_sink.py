"""Batch tokens: deterministic from the offset range of every partition a batch covers."""

from __future__ import annotations

import hashlib
import random

from consumers.sink import Batch, Record


def expected_token(records: list[Record]) -> str:
    partitions = sorted({(r.topic, r.partition) for r in records})
    spec = ";".join(
        f"{t}/{p}:{min(r.offset for r in records if (r.topic, r.partition) == (t, p))}"
        f"-{max(r.offset for r in records if (r.topic, r.partition) == (t, p))}"
        for t, p in partitions
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:32]


def test_the_token_names_each_partitions_lowest_and_highest_offset_in_any_order() -> None:
    rng = random.Random("batch")
    for _ in range(500):
        records = [
            Record(rng.choice("ab"), rng.randrange(3), rng.randrange(100), None, b"", None)  # type: ignore[arg-type]
            for _ in range(rng.randrange(30))
        ]
        assert Batch.of(records).token == expected_token(records)


def test_a_retry_of_the_same_offsets_gets_the_same_token() -> None:
    records = [Record("t", 0, offset, None, b"", None) for offset in (5, 3, 9)]  # type: ignore[arg-type]
    assert Batch.of(records).token == Batch.of(list(reversed(records))).token
    assert Batch.of(records).token != Batch.of(records[:2]).token
