"""MinHash near-duplicate detection, vectorized with numpy (Broder 1997; LSH banding per Leskovec et al., MMDS ch. 3).

- Shingles: character k-grams (default 5) or word k-grams, hashed to uint32 with a vectorized polynomial rolling hash.
- Signatures: ``num_perm`` universal hash functions h_i(x) = (a_i·x + b_i) mod p, p = 2^61-1, truncated to 32 bits;
  signature[i] = min over the document's shingles. All documents of a batch are processed at once with
  ``np.minimum.reduceat`` over a flat shingle array, no Python loop per shingle.
- LSH: the signature is cut into ``bands`` × ``rows``; documents sharing any band key are candidates. The (b, r)
  split minimizes weighted false-positive + false-negative probability at the threshold (as datasketch does).
- Jaccard verification on the exact shingle sets decides the merge; union-find builds clusters.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

_MERSENNE = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64(0xFFFFFFFF)
_WORD = re.compile(r"\w+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Lower-case and collapse whitespace (so near-dups differing only in spacing/case hash alike)."""
    return " ".join(text.lower().split())


def shingle_hashes(text: str, k: int = 5, unit: str = "char") -> np.ndarray:
    """Unique uint32 hashes of the k-shingles of ``text`` (shape [S], sorted).

    unit="char": character k-grams of the normalized text; unit="word": k-grams of words. A text shorter than k
    units yields one shingle (the whole text); an empty text yields an empty array.
    """
    norm = normalize_text(text)
    if unit == "char":
        codes = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    elif unit == "word":
        codes = np.array(
            [int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little") for w in _WORD.findall(norm)],
            dtype=np.uint64,
        )
    else:
        raise ValueError(f"unknown shingle unit {unit!r} (char or word)")
    if codes.size == 0:
        return np.empty(0, dtype=np.uint32)
    k_eff = min(k, codes.size)
    n = codes.size - k_eff + 1
    # polynomial hash sum_j codes[i+j] * B^(k-1-j) mod 2^64, then mixed down to 32 bits
    acc = np.zeros(n, dtype=np.uint64)
    base = np.uint64(1_000_003)
    for j in range(k_eff):
        acc = acc * base + codes[j : j + n]
    acc ^= acc >> np.uint64(29)
    acc *= np.uint64(0xBF58476D1CE4E5B9)
    acc ^= acc >> np.uint64(32)
    return np.unique((acc & _MAX32).astype(np.uint32))


def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The universal-hash parameters (a, b), each shape [num_perm] uint64, a in [1, p), b in [0, p)."""
    rng = np.random.RandomState(seed)
    a = rng.randint(1, (1 << 61) - 1, size=num_perm, dtype=np.uint64)
    b = rng.randint(0, (1 << 61) - 1, size=num_perm, dtype=np.uint64)
    return a, b


def _mod_mersenne(x: np.ndarray) -> np.ndarray:
    return (x & _MERSENNE) + (x >> np.uint64(61))


def minhash_signatures(
    shingle_sets: Sequence[np.ndarray], num_perm: int = 128, seed: int = 1, chunk: int = 1 << 16
) -> np.ndarray:
    """MinHash signatures for many documents at once: shape [n_docs, num_perm] uint32.

    h_i(x) = ((a_i·x + b_i) mod p) & 0xFFFFFFFF with p = 2^61-1 (the product a·x is taken mod 2^64 first, a cheap
    variant of Carter–Wegman hashing that is still well mixed). An empty document gets all 0xFFFFFFFF.
    """
    a, b = permutations(num_perm, seed)
    n = len(shingle_sets)
    out = np.full((n, num_perm), 0xFFFFFFFF, dtype=np.uint32)
    sizes = np.array([len(s) for s in shingle_sets], dtype=np.int64)
    nonempty = np.flatnonzero(sizes)
    if nonempty.size == 0:
        return out
    # process documents in groups whose shingles total about `chunk`, to bound the [S, num_perm] temporary
    start = 0
    while start < nonempty.size:
        total, stop = 0, start
        while stop < nonempty.size and (total == 0 or total + sizes[nonempty[stop]] <= chunk):
            total += sizes[nonempty[stop]]
            stop += 1
        docs = nonempty[start:stop]
        flat = np.concatenate([shingle_sets[d] for d in docs]).astype(np.uint64)
        hv = _mod_mersenne(flat[:, None] * a[None, :] + b[None, :]) & _MAX32
        offsets = np.concatenate([[0], np.cumsum(sizes[docs])[:-1]])
        out[docs] = np.minimum.reduceat(hv, offsets, axis=0).astype(np.uint32)
        start = stop
    return out


def _false_probabilities(threshold: float, b: int, r: int, steps: int = 200) -> tuple[float, float]:
    xs = np.linspace(0.0, 1.0, steps + 1)
    p = 1.0 - (1.0 - xs**r) ** b
    dx = xs[1] - xs[0]
    fp = float(np.sum(p[xs < threshold]) * dx)
    fn = float(np.sum(1.0 - p[xs >= threshold]) * dx)
    return fp, fn


def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands·rows ≤ num_perm minimizing fp_weight·FP + fn_weight·FN area at ``threshold``."""
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp, fn = _false_probabilities(threshold, b, r)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH band keys, shape [n_docs, bands] uint64: a 64-bit hash of each band's ``rows`` signature values.

    Keys of different bands never collide by construction of the caller (group by (band, key)).
    """
    n = signatures.shape[0]
    sig = signatures[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    acc = np.full((n, bands), 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    for j in range(rows):
        acc = (acc ^ sig[:, :, j]) * prime
    return acc


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity |A∩B| / |A∪B| of two sorted unique shingle-hash arrays (1.0 for two empties)."""
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / float(a.size + b.size - inter)


class UnionFind:
    """Disjoint sets over hashable ids with path halving; the root of a set is its smallest id (deterministic)."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, x, y) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            lo, hi = (rx, ry) if rx < ry else (ry, rx)
            self.parent[hi] = lo

    def clusters(self) -> dict:
        """Root -> sorted members, for every set with at least two members."""
        groups: dict = {}
        for x in list(self.parent):
            groups.setdefault(self.find(x), []).append(x)
        return {r: sorted(m) for r, m in groups.items() if len(m) > 1}
