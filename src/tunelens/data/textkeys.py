"""Word tokens and vectorised n-gram hashes, shared by near-dup detection and decontamination.

Texts become arrays of 64-bit word hashes; n-gram hashes are computed for all texts at once
with numpy over one concatenated array (windows that cross a text boundary are masked out),
so the per-record Python work is one regex and one list comprehension.
"""

from __future__ import annotations

import hashlib
import itertools
import re

import numpy as np

_WORD = re.compile(r"\w+")
_MASK64 = (1 << 64) - 1


def words(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation and whitespace ignored)."""
    return _WORD.findall(text.lower())


class WordHasher:
    """Deterministic 64-bit word hashes (blake2b), cached per distinct word."""

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    def _new(self, word: str) -> int:
        value = int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
        self._cache[word] = value
        return value

    def hashes(self, tokens: list[str]) -> list[int]:
        cache = self._cache
        return [cache[t] if t in cache else self._new(t) for t in tokens]


class TokenCache:
    """Word hashes per distinct text, shared by the steps of one run (a text is tokenised once)."""

    def __init__(self) -> None:
        self.hasher = WordHasher()
        self._memo: dict[str, list[int]] = {}

    def hashes(self, text: str) -> list[int]:
        found = self._memo.get(text)
        if found is None:
            found = self._memo[text] = self.hasher.hashes(words(text))
        return found

    def clear(self) -> None:
        self._memo.clear()


# Odd multipliers for a position-dependent combination of the words in a window.
_MULTIPLIERS = np.random.default_rng(20240613).integers(1, 1 << 62, size=64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def ngram_hashes(token_hashes: list[list[int]], n: int, short_as_one: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All n-gram hashes of many token sequences at once.

    Returns ``(hashes, owner)``: ``owner[k]`` is the index of the sequence that n-gram ``k``
    comes from. With ``short_as_one``, a non-empty sequence shorter than ``n`` contributes one
    hash of all its tokens (so short texts still get a shingle).
    """
    if n < 1 or n > len(_MULTIPLIERS):
        raise ValueError(f"n-gram size must be between 1 and {len(_MULTIPLIERS)}, got {n}")
    lengths = np.fromiter((len(t) for t in token_hashes), dtype=np.int64, count=len(token_hashes))
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    flat = np.fromiter(itertools.chain.from_iterable(token_hashes), dtype=np.uint64, count=total)
    owner_of_token = np.repeat(np.arange(len(token_hashes)), lengths)
    starts = np.cumsum(lengths) - lengths
    # Pad so that every start position has n tokens after it; padded windows are masked out.
    padded = np.concatenate([flat, np.zeros(n, dtype=np.uint64)])
    acc = np.zeros(total, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            acc += padded[j : j + total] * _MULTIPLIERS[j]
    position = np.arange(total) - starts[owner_of_token]
    valid = position + n <= lengths[owner_of_token]
    hashes, owner = acc[valid], owner_of_token[valid]
    if short_as_one:
        short = np.nonzero((lengths > 0) & (lengths < n))[0]
        if len(short):
            extra = np.zeros(len(short), dtype=np.uint64)
            with np.errstate(over="ignore"):
                for j in range(n - 1):
                    has = lengths[short] > j
                    idx = np.where(has, starts[short] + j, 0)
                    extra += np.where(has, flat[idx] * _MULTIPLIERS[j], np.uint64(0))
            hashes = np.concatenate([hashes, extra])
            owner = np.concatenate([owner, short])
            order = np.argsort(owner, kind="stable")
            hashes, owner = hashes[order], owner[order]
    return hashes, owner
