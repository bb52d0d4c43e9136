"""Exact and near-duplicate decisions: deterministic, first of a group kept."""

from __future__ import annotations

import pytest

from consumers.export import dedup
from consumers.export.dedup import ExactDuplicates, NearDuplicates, normalised_hash

BASE = (
    "Please write a friendly email to my landlord asking whether the broken heating in the "
    "living room can be repaired before the weekend, mentioning that the radiator has been cold "
    "since Tuesday and that I can be home on Thursday afternoon to let the technician in"
)


def test_exact_duplicates_ignore_case_and_spacing_only() -> None:
    exact = ExactDuplicates()
    assert not exact.seen(normalised_hash(["Hello  World", "hi"]))
    assert exact.seen(normalised_hash(["hello world ", "HI"]))
    assert not exact.seen(normalised_hash(["hello world", "hi!"]))
    # Message boundaries count: the same words split differently are another conversation.
    assert not exact.seen(normalised_hash(["hello", "world hi"]))


def test_exact_duplicates_are_found_after_merging_into_the_sorted_array(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dedup, "_RECENT_HASHES", 3)
    exact = ExactDuplicates()
    keys = [normalised_hash([f"text {i}"]) for i in range(10)] + [b"\xff" * 8, b"\x00" * 8]
    assert [exact.seen(k) for k in keys] == [False] * len(keys)
    assert [exact.seen(k) for k in reversed(keys)] == [True] * len(keys)
    assert not exact.seen(normalised_hash(["text 10"]))


def test_near_duplicates_keep_the_first_and_drop_close_copies() -> None:
    near = NearDuplicates(threshold=0.7)
    near.add(BASE)
    near.add(BASE.replace("Thursday", "Friday"))  # one word changed
    near.add("How do I reverse a linked list in C? Show the iterative version with comments.")
    near.add(BASE.replace("Thursday", "Wednesday"))
    assert near.duplicates().tolist() == [False, True, False, True]


def test_near_duplicate_threshold_is_checked() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        NearDuplicates(threshold=1.5)


def test_decisions_do_not_depend_on_the_process() -> None:
    # Fixed values: Python's per-process hash() seed plays no part (a rerun of an export in
    # another process must drop the same conversations).
    near = NearDuplicates()
    near.add(BASE)
    assert normalised_hash(["a"]).hex() == "2bb03ca0f817702c"
    near._flush()
    assert near._chunks[0].tolist() == [
        [9496472347956667947, 14676911080918990202, 1546596821715726440, 6080371427483536644]
    ]


def test_batched_signatures_match_one_at_a_time() -> None:
    # Texts are signed in numpy batches: a text's bands must not depend on its neighbours,
    # including texts of fewer than three words (one shingle) and empty ones.
    texts = [BASE, "", "two words", "x", BASE.upper(), "three words here"]
    together = NearDuplicates()
    for text in texts:
        together.add(text)
    together._flush()
    for i, text in enumerate(texts):
        alone = NearDuplicates()
        alone.add(text)
        alone._flush()
        assert together._chunks[0][i].tolist() == alone._chunks[0][0].tolist()
