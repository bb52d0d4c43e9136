"""Duplicate conversations: exact (a normalised hash) and near (MinHash LSH).

Pure and deterministic: the same conversations in the same order give the same decisions in any
process (no Python ``hash()``, whose seed changes per process). The first of a group is kept.

- Exact: ``blake2b`` of the roles and texts, lower-cased with whitespace collapsed; decided as the
  conversations stream past (8 bytes per conversation kept).
- Near: a MinHash of the word 3-grams (datasketch, fixed seed, ``num_perm`` permutations),
  cut into LSH bands whose count and width datasketch's optimiser picks for the threshold. Two
  conversations sharing any band are duplicates. The bands are kept as a numpy array (8 bytes per
  band and conversation: 40 MB for a million at the default 64 permutations), and the decision is
  made once all are seen, by the first occurrence of each band value, so memory stays bounded
  without an in-memory LSH index. Candidates are not re-checked against the exact Jaccard
  similarity: the band layout makes a false match below the threshold unlikely, and keeping
  every signature for a check would cost ``num_perm`` times more memory.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np
import xxhash

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
# The text a near-duplicate signature is computed from is capped: a conversation's beginning
# decides whether it repeats another, and the cost stays bounded for very long ones.
MAX_SIGNATURE_CHARS = 8000
SEED = 1


def normalised_hash(texts: Iterable[str]) -> bytes:
    """8 bytes identifying the conversation's text up to case and whitespace."""
    digest = hashlib.blake2b(digest_size=8)
    for text in texts:
        digest.update(_SPACE.sub(" ", text.lower()).strip().encode("utf-8", "surrogatepass"))
        digest.update(b"\x1e")
    return digest.digest()


class ExactDuplicates:
    """Remembers every conversation hash seen; ``seen`` answers while streaming."""

    def __init__(self) -> None:
        self._hashes: set[bytes] = set()

    def seen(self, key: bytes) -> bool:
        if key in self._hashes:
            return True
        self._hashes.add(key)
        return False


def _hash32(data: bytes) -> int:
    return xxhash.xxh32_intdigest(data, seed=SEED)


class NearDuplicates:
    """MinHash LSH bands of every conversation added; ``duplicates()`` at the end."""

    def __init__(self, *, threshold: float = 0.85, num_perm: int = 64) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError("the near-duplicate threshold must be between 0 and 1, e.g. 0.85")
        # Deferred: datasketch imports scipy, seconds of start-up an export without near-dedup
        # (the raw profile) should not pay.
        from datasketch import MinHash
        from datasketch.lsh import _optimal_param

        self._minhash = MinHash
        self.threshold = threshold
        self.num_perm = num_perm
        self.bands, self.rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
        self._permutations = MinHash(num_perm=num_perm, seed=SEED, hashfunc=_hash32).permutations
        self._chunks: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []

    def add(self, text: str) -> None:
        words = _WORD.findall(text[:MAX_SIGNATURE_CHARS].lower())
        shingles = {" ".join(words[i : i + 3]).encode() for i in range(max(1, len(words) - 2))}
        sketch = self._minhash(
            num_perm=self.num_perm,
            seed=SEED,
            hashfunc=_hash32,
            permutations=self._permutations,
            scheme="affine32",
        )
        sketch.update_batch(list(shingles))
        values = sketch.hashvalues.astype(np.uint64)
        r = self.rows
        # One 64-bit key per band: the band's values folded together (order matters).
        bands = values[: self.bands * r].reshape(self.bands, r)
        keys = np.zeros(self.bands, dtype=np.uint64)
        for column in range(r):
            keys = keys * np.uint64(0x100000001B3) ^ bands[:, column]
        self._pending.append(keys)
        if len(self._pending) >= 4096:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(np.vstack(self._pending))
            self._pending = []

    def duplicates(self) -> np.ndarray:
        """A boolean per conversation added, in order: True when an earlier one is its near twin."""
        self._flush()
        if not self._chunks:
            return np.zeros(0, dtype=bool)
        keys = np.vstack(self._chunks)
        self._chunks = [keys]
        order = np.arange(len(keys))
        duplicate = np.zeros(len(keys), dtype=bool)
        for band in range(self.bands):
            _, first, inverse = np.unique(keys[:, band], return_index=True, return_inverse=True)
            duplicate |= first[inverse] < order
        return duplicate
