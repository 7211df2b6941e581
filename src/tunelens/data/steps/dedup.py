"""Exact and near-duplicate removal. The first record of each cluster is kept; every dropped one
names the record it duplicates, so clusters can be rebuilt from rejects.jsonl.

Near-dup signatures are datasketch "affine32" MinHashes computed for all records at once with
numpy (word n-gram shingles -> 32-bit hashes -> the MinHash permutations of
``datasketch.MinHash(num_perm, seed=1)``), then indexed in a ``datasketch.MinHashLSH``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Literal

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from pydantic import Field

from tunelens.progress import advance, track
from tunelens.data.steps.base import (
    Record,
    Rejection,
    SectionConfig,
    Step,
    StepResult,
    message_fields,
    prompt_and_responses,
    prompt_texts,
    register,
)
from tunelens.data.textkeys import TokenCache, ngram_hashes

MINHASH_SEED = 1


def exact_key(record: Record) -> str:
    """sha256 of kind, roles and case-folded, whitespace-collapsed texts."""
    turns = record.get("prompt") if record.get("kind") == "preference" else record.get("messages")
    roles = ",".join(m["role"] for m in turns)
    texts = "\x1e".join(" ".join(text.split()).casefold() for _, text in message_fields(record))
    return hashlib.sha256(f"{record.get('kind')}\x1f{roles}\x1f{texts}".encode("utf-8", "surrogatepass")).hexdigest()


def _cluster_stats(kept_of: dict[int, list[int]], records: list[Record]) -> dict:
    sizes = Counter({rep: len(dups) + 1 for rep, dups in kept_of.items()})
    return {
        "clusters": len(sizes),
        "records_in_clusters": sum(sizes.values()),
        "largest": [{"kept": records[rep]["id"], "size": size} for rep, size in sizes.most_common(5)],
    }



class DedupConfig(SectionConfig):
    exact: bool = Field(True, description="Drop records whose normalised text is identical to an earlier one.")
    near: bool = Field(True, description="Drop near-duplicates found with MinHash LSH.")
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard similarity above which records are near-duplicates.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    ngram: int = Field(5, ge=1, le=32, description="Word n-gram (shingle) size.")
    near_fields: Literal["all", "prompt", "response"] = Field(
        "all", description="Text compared for near-duplicates: the whole record, only the prompt side, or only the replies.")

@register
class ExactDedup(Step):
    name = "dedup_exact"
    order = 50
    config_key = "dedup"
    config_model = DedupConfig

    @classmethod
    def from_config(cls, config, ctx):
        return cls() if config.exact else None

    def run(self, records: list[Record]) -> StepResult:
        result = StepResult(kept=[])
        first: dict[str, int] = {}
        kept_of: dict[int, list[int]] = {}
        for i, rec in enumerate(track(records, "records")):
            key = exact_key(rec)
            rep = first.setdefault(key, i)
            if rep == i:
                result.kept.append(rec)
            else:
                kept_of.setdefault(rep, []).append(i)
                result.rejected.append(Rejection(rec, f"exact duplicate of {records[rep]['id']}",
                                                 {"duplicate_of": records[rep]["id"], "cluster": records[rep]["id"]}))
        result.stats = _cluster_stats(kept_of, records)
        return result


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 32-bit finalizer: the pre-mix datasketch applies in its affine32 scheme."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def minhash_signatures(tokens: list[list[int]], num_perm: int, ngram: int, chunk: int = 1 << 15) -> tuple[np.ndarray, np.ndarray]:
    """(signatures [len(tokens), num_perm] uint32, has_tokens [len(tokens)] bool) from word hashes.

    Row i equals the ``hashvalues`` of ``MinHash(num_perm, seed=1)`` updated with the 32-bit
    hashes of sequence i's word n-grams (a sequence shorter than ``ngram`` words is one shingle).
    """
    shingles, owner = ngram_hashes(tokens, ngram, short_as_one=True)
    folded = ((shingles >> np.uint64(32)) ^ shingles).astype(np.uint32)
    a, b = MinHash(num_perm=num_perm, seed=MINHASH_SEED).permutations
    # Transposed (num_perm x records) so that reduceat runs along contiguous rows: 4x faster.
    sig = np.full((num_perm, len(tokens)), np.iinfo(np.uint32).max, dtype=np.uint32)
    with np.errstate(over="ignore"):
        mixed = _fmix32(folded)
        for start in range(0, len(mixed), chunk):
            part, own = mixed[start : start + chunk], owner[start : start + chunk]
            permuted = a[:, None] * part[None, :] + b[:, None]
            cuts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])
            cols = own[cuts]
            sig[:, cols] = np.minimum(sig[:, cols], np.minimum.reduceat(permuted, cuts, axis=1))
            advance("MinHash shingles", min(start + chunk, len(mixed)), len(mixed))
    has_tokens = np.fromiter((len(t) > 0 for t in tokens), dtype=bool, count=len(tokens))
    return np.ascontiguousarray(sig.T), has_tokens


def colliding(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Records sharing at least one LSH band with another record (the only ones LSH can pair).

    Each band's values are folded into one 64-bit key; keys that occur once cannot produce a
    candidate, so those records skip the (Python-speed) MinHashLSH index entirely.
    """
    mult = np.random.default_rng(7).integers(1, 1 << 62, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    out = np.zeros(len(sig), dtype=bool)
    with np.errstate(over="ignore"):
        for band in range(bands):
            keys = (sig[:, band * rows : (band + 1) * rows].astype(np.uint64) * mult).sum(axis=1, dtype=np.uint64)
            _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
            out |= counts[inverse] > 1
    return out


@register
class NearDedup(Step):
    name = "dedup_near"
    order = 60
    config_key = "dedup"
    config_model = DedupConfig

    def __init__(self, config: DedupConfig, tokens: TokenCache | None = None) -> None:
        self.config = config
        self.tokens = tokens or TokenCache()

    @classmethod
    def from_config(cls, config, ctx):
        return cls(config, ctx.tokens) if config.near else None

    def _texts(self, record: Record) -> list[str]:
        if self.config.near_fields == "prompt":
            return prompt_texts(record)
        if self.config.near_fields == "response":
            return prompt_and_responses(record)[1]
        return [text for _, text in message_fields(record)]

    def run(self, records: list[Record]) -> StepResult:
        cfg = self.config
        result = StepResult(kept=[])
        seqs = [[h for text in self._texts(r) for h in self.tokens.hashes(text)] for r in track(records, "words")]
        sig, has_tokens = minhash_signatures(seqs, cfg.num_perm, cfg.ngram)
        lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        maybe_dup = colliding(sig, lsh.b, lsh.r) & has_tokens
        kept_of: dict[int, list[int]] = {}
        for i, rec in enumerate(track(records, "LSH")):
            if not maybe_dup[i]:  # no band shared with any record (or no words): cannot be a near-duplicate
                result.kept.append(rec)
                continue
            minhash = LeanMinHash(seed=MINHASH_SEED, hashvalues=sig[i], scheme="affine32")
            best, best_sim = -1, 0.0
            for cand in lsh.query(minhash):
                sim = float(np.mean(sig[cand] == sig[i]))
                if sim > best_sim:
                    best, best_sim = cand, sim
            if best >= 0 and best_sim >= cfg.threshold:
                kept_of.setdefault(best, []).append(i)
                rep_id = records[best]["id"]
                result.rejected.append(Rejection(rec, f"near duplicate of {rep_id} (estimated Jaccard {best_sim:.2f})",
                                                 {"duplicate_of": rep_id, "cluster": rep_id, "similarity": round(best_sim, 3)}))
            else:
                lsh.insert(i, minhash, check_duplication=False)
                result.kept.append(rec)
        result.stats = _cluster_stats(kept_of, records)
        result.stats.update(threshold=cfg.threshold, num_perm=cfg.num_perm, ngram=cfg.ngram, fields=cfg.near_fields,
                            lsh_bands=lsh.b, lsh_rows=lsh.r, band_collisions=int(maybe_dup.sum()))
        return result
