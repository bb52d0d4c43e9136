"""What a sink is: it takes a batch and either delivers it, or says which records it rejects, or
raises a retriable error. The runner turns that into exactly one outcome per batch: delivered
(commit), retry (pause, back off, same batch again) or rejected (dead-letter, then commit)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from schemas import Decoded


class SinkError(Exception):
    """A sink could not take the batch. ``retriable`` says whether the same batch may succeed."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event: Decoded


@dataclass(frozen=True, slots=True)
class Rejected:
    record: Record
    reason: str


@dataclass(frozen=True, slots=True)
class Batch:
    records: Sequence[Record]
    token: str  # deterministic from the offsets it covers, so a retry deduplicates

    @staticmethod
    def of(records: Sequence[Record]) -> Batch:
        ranges: dict[tuple[str, int], tuple[int, int]] = {}
        for r in records:
            low, high = ranges.get((r.topic, r.partition), (r.offset, r.offset))
            ranges[(r.topic, r.partition)] = (min(low, r.offset), max(high, r.offset))
        spec = ";".join(f"{t}/{p}:{lo}-{hi}" for (t, p), (lo, hi) in sorted(ranges.items()))
        return Batch(records, hashlib.sha256(spec.encode()).hexdigest()[:32])


@dataclass(slots=True)
class WriteResult:
    rejected: list[Rejected] = field(default_factory=list)


class Sink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def write(self, batch: Batch) -> WriteResult:
        """Deliver the batch, rejecting records that can never be delivered; raise SinkError
        (retriable) when the whole batch should be tried again later."""
        ...
