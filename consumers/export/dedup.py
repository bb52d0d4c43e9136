"""Duplicate conversations: exact (a normalised hash) and near (MinHash LSH).

Pure and deterministic: the same conversations in the same order give the same decisions in any
process (no Python ``hash()``, whose seed changes per process). The first of a group is kept.

- Exact: ``blake2b`` of the roles and texts, lower-cased with whitespace collapsed; decided as the
  conversations stream past (8 bytes per conversation kept, in a sorted numpy array).
- Near: a MinHash of the word 3-grams (each word hashed with xxh32, a 3-gram's hash mixed from
  its words' hashes, datasketch's ``affine32`` permutations with a fixed seed, ``num_perm`` of
  them), computed with numpy over batches of texts, cut into LSH bands whose count and width
  datasketch's optimiser picks for the threshold. Two
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
from itertools import chain

import numpy as np
import xxhash

_WORD = re.compile(r"\w+")
# The text a near-duplicate signature is computed from is capped: a conversation's beginning
# decides whether it repeats another, and the cost stays bounded for very long ones.
MAX_SIGNATURE_CHARS = 8000
SEED = 1
# Texts signed per numpy batch: bounds the (words by permutations) matrix to a few MB.
_BATCH_WORDS = 16_384
# Words whose hashes are remembered at most (about 5 MB); the cache starts over beyond.
_MAX_CACHED_WORDS = 50_000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# Exact-duplicate hashes kept in a set before they are merged into the sorted array.
_RECENT_HASHES = 65_536


def normalised_hash(texts: Iterable[str]) -> bytes:
    """8 bytes identifying the conversation's text up to case and whitespace."""
    digest = hashlib.blake2b(digest_size=8)
    for text in texts:
        # split/join: the same as collapsing r"\s+" and stripping (both use str.isspace), faster.
        digest.update(" ".join(text.lower().split()).encode("utf-8", "surrogatepass"))
        digest.update(b"\x1e")
    return digest.digest()


class ExactDuplicates:
    """Remembers every conversation hash seen; ``seen`` answers while streaming.

    8 bytes a hash in a sorted numpy array, the newest few in a set until they are merged into
    it: a set of a million ``bytes`` would cost ~70 MB.
    """

    def __init__(self) -> None:
        self._sorted = np.zeros(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def seen(self, key: bytes) -> bool:
        value = int.from_bytes(key)
        if value in self._recent:
            return True
        if self._sorted.size:
            at = int(self._sorted.searchsorted(np.uint64(value)))
            if at < self._sorted.size and int(self._sorted[at]) == value:
                return True
        self._recent.add(value)
        if len(self._recent) >= _RECENT_HASHES:
            recent = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            self._sorted = np.sort(np.concatenate([self._sorted, recent]))
            self._recent = set()
        return False


class NearDuplicates:
    """MinHash LSH bands of every conversation added; ``duplicates()`` at the end.

    Texts are buffered and signed in batches with numpy: a per-conversation MinHash object costs
    more than the hashing itself.
    """

    def __init__(self, *, threshold: float = 0.85, num_perm: int = 64) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError("the near-duplicate threshold must be between 0 and 1, e.g. 0.85")
        # Deferred: datasketch imports scipy, seconds of start-up an export without near-dedup
        # (the raw profile) should not pay.
        from datasketch import MinHash
        from datasketch.lsh import _optimal_param

        self.threshold = threshold
        self.num_perm = num_perm
        self.bands, self.rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
        # datasketch's "affine32" permutations: a·h + b in uint32 after a MurmurHash3 premix.
        a, b = MinHash(num_perm=num_perm, seed=SEED, scheme="affine32").permutations
        self._a, self._b = a.astype(np.uint32), b.astype(np.uint32)
        self._chunks: list[np.ndarray] = []
        self._words: list[list[int]] = []  # the word hashes of each text not signed yet
        self._word_hashes = _WordHashes()
        self._pending_words = 0

    def add(self, text: str) -> None:
        words = _WORD.findall(text[:MAX_SIGNATURE_CHARS].lower()) or [""]
        if len(self._word_hashes) > _MAX_CACHED_WORDS:
            self._word_hashes.clear()
        self._words.append(list(map(self._word_hashes.__getitem__, words)))
        self._pending_words += len(words)
        if self._pending_words >= _BATCH_WORDS:
            self._flush()

    def _flush(self) -> None:
        if self._words:
            self._chunks.append(self._band_keys(self._words))
            self._words, self._pending_words = [], 0

    def _band_keys(self, texts: list[list[int]]) -> np.ndarray:
        """One row of band keys per text: MinHash over word 3-grams, folded per LSH band."""
        lengths = np.fromiter((len(w) for w in texts), dtype=np.int64, count=len(texts))
        words = np.fromiter(chain.from_iterable(texts), dtype=np.uint32, count=int(lengths.sum()))
        starts = np.cumsum(lengths) - lengths
        left = np.repeat(lengths, lengths) - (np.arange(len(words)) - np.repeat(starts, lengths))
        padded = np.concatenate([words, np.zeros(2, dtype=np.uint32)]).astype(np.uint64)
        # A 3-gram's hash from its words' hashes, through a 64-bit finaliser (a weaker mix, such
        # as a sum of the words' hashes, biases the similarity estimates low); a text of fewer
        # than three words is one shingle of the words it has.
        second = np.where(left >= 2, padded[1:-1], np.uint64(0))
        third = np.where(left >= 3, padded[2:], np.uint64(0))
        mixed = _fmix64(((padded[:-2] << np.uint64(32)) | second) ^ (third * _GOLDEN))
        keep = left >= np.minimum(3, np.repeat(lengths, lengths))
        shingles = _fmix32((mixed[keep] >> np.uint64(32)).astype(np.uint32))
        counts = np.maximum(lengths - 2, 1)
        signed = shingles[:, None] * self._a + self._b
        minima = np.minimum.reduceat(signed, np.cumsum(counts) - counts, axis=0)
        r = self.rows
        values = minima[:, : self.bands * r].astype(np.uint64).reshape(len(texts), self.bands, r)
        # One 64-bit key per band: the band's values folded together (order matters).
        keys = np.zeros((len(texts), self.bands), dtype=np.uint64)
        for column in range(r):
            keys = keys * np.uint64(0x100000001B3) ^ values[:, :, column]
        return keys

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


class _WordHashes(dict[str, int]):
    """xxh32 of each word, remembered: words repeat, and a dict hit costs a third of a hash."""

    def __missing__(self, word: str) -> int:
        value = xxhash.xxh32_intdigest(word.encode(), SEED)
        self[word] = value
        return value


def _fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: one 3-gram's hash from its three word hashes."""
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    mixed: np.ndarray = values ^ (values >> np.uint64(33))
    return mixed


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser: datasketch's premix before its affine permutations."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    mixed: np.ndarray = values ^ (values >> np.uint32(16))
    return mixed
