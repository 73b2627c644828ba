"""MinHash near-duplicate detection, vectorized with numpy (Broder 1997; LSH banding per Leskovec et al., MMDS ch. 3).

- Shingles: character k-grams (default 5) or word k-grams, hashed to uint32 with a vectorized polynomial rolling hash.
  A batch of texts is hashed as one array of code points (``shingle_windows``).
- Signatures: ``num_perm`` multiply-add-shift hash functions h_i(x) = ((a_i·x + b_i) mod 2^64) >> 32
  (Dietzfelbinger 1996, a universal family from 32-bit keys to 32-bit values: 3 vector ops per element);
  signature[i] = min over the document's shingles (every window of a batch, repeats kept: a minimum ignores
  them, so no per-document sort). All documents of a batch are processed at once: a cache-sized
  [num_perm, S] block reduced by ``np.minimum.reduceat``; no Python loop per shingle or per permutation.
- LSH: the signature is cut into ``bands`` × ``rows``; documents sharing any band key are candidates. The (b, r)
  split minimizes weighted false-positive + false-negative probability at the threshold (as datasketch does).
- Jaccard verification on the exact shingle sets decides the merge; union-find builds clusters.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

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
    return np.unique(_window_hashes(codes, min(k, codes.size)))  # shorter than k: the whole text


def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The hash parameters (a, b), each shape [num_perm] uint64; a is odd (required by multiply-shift)."""
    rng = np.random.RandomState(seed)
    a = rng.randint(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.randint(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64)
    return a, b


def _window_hashes(codes: np.ndarray, k: int) -> np.ndarray:
    """Polynomial hash sum_j codes[i+j]·B^(k-1-j) mod 2^64 of every k-window, mixed down to uint32 [len - k + 1]."""
    c = codes.astype(np.uint64)
    n = c.size - k + 1
    acc = c[:n].copy()
    base = np.uint64(1_000_003)
    for j in range(1, k):
        acc *= base
        acc += c[j : j + n]
    acc ^= acc >> np.uint64(29)
    acc *= np.uint64(0xBF58476D1CE4E5B9)
    acc ^= acc >> np.uint64(32)
    return (acc & _MAX32).astype(np.uint32)


def shingle_windows(texts: Sequence[str], k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Char k-shingle hashes of every window of every text, repeats kept: (hashes uint32 [W], offsets int64 [n + 1]).

    Document d's windows are ``hashes[offsets[d]:offsets[d + 1]]``; as a set they equal ``shingle_hashes(texts[d],
    k)``. Enough for MinHash (a minimum ignores repeats) and cheaper than deduplicating: the rolling hash runs once
    over the concatenated normalized texts and windows crossing a document boundary are skipped.
    """
    norms = [normalize_text(t) for t in texts]  # str methods in C: faster here than array masks over code points
    lens = np.fromiter((len(x) for x in norms), dtype=np.int64, count=len(norms))
    codes = np.frombuffer("".join(norms).encode("utf-32-le"), dtype=np.uint32)
    per_doc = np.where(lens >= k, lens - k + 1, (lens > 0).astype(np.int64))  # shorter than k: the whole text
    offsets = np.zeros(lens.size + 1, dtype=np.int64)
    np.cumsum(per_doc, out=offsets[1:])
    if codes.size == 0:
        return np.empty(0, np.uint32), offsets
    starts = np.cumsum(lens) - lens
    full = lens >= k
    hashes = np.empty(offsets[-1], dtype=np.uint32)
    if full.any():
        acc = _window_hashes(codes, k) if codes.size >= k else np.empty(0, np.uint32)
        n_full = np.where(full, per_doc, 0)
        gather = np.arange(n_full.sum(), dtype=np.int64) + np.repeat(starts - (np.cumsum(n_full) - n_full), n_full)
        hashes[np.repeat(full, per_doc)] = acc[gather]
    for d in np.flatnonzero((lens > 0) & ~full):
        hashes[offsets[d]] = _window_hashes(codes[starts[d] : starts[d] + lens[d]], int(lens[d]))[0]
    return hashes, offsets


def shingle_rows(texts: Sequence[str], k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Char k-shingle hashes laid out as contiguous rows, cheapest to compute: (hashes uint64 [L], offsets int64 [n + 1]).

    L is the total normalized length; document d owns ``hashes[offsets[d]:offsets[d + 1]]`` (one slot per character).
    The slots hold the unmixed polynomial hash of every window starting in the document (the input of a sketch
    that applies its own hash permutations, e.g. rensa's ``digest_matrix_from_flat_token_hashes``); the last k − 1
    slots, whose windows would cross into the next document, repeat the document's first window instead (a repeat
    changes no minimum). As a set, a row is the document's shingle set (``shingle_hashes``) under another hash; a
    document shorter than k holds its whole-text hash in every slot; an empty document has an empty row.
    """
    norms = [normalize_text(t) for t in texts]
    lens = np.fromiter((len(x) for x in norms), dtype=np.int64, count=len(norms))
    offsets = np.zeros(lens.size + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    codes = np.frombuffer("".join(norms).encode("utf-32-le"), dtype=np.uint32)
    if codes.size == 0:
        return np.empty(0, np.uint64), offsets
    padded = np.zeros(codes.size + k - 1, dtype=np.uint64)
    padded[: codes.size] = codes
    acc = padded[: codes.size].copy()
    base = np.uint64(1_000_003)
    for j in range(1, k):
        acc *= base
        acc += padded[j : j + codes.size]
    starts = offsets[:-1]
    full = np.flatnonzero(lens >= k)
    if full.size and k > 1:  # windows crossing the end: repeat the document's first window
        tail = (offsets[full + 1][:, None] - np.arange(1, k)[None, :]).ravel()
        acc[tail] = np.repeat(acc[starts[full]], k - 1)
    for d in np.flatnonzero((lens > 0) & (lens < k)):  # shorter than k: the whole text is the one shingle
        whole = np.uint64(0)
        for c in codes[starts[d] : offsets[d + 1]].astype(np.uint64):
            whole = whole * base + c
        acc[starts[d] : offsets[d + 1]] = whole
    return acc, offsets


def shingle_hashes_batch(texts: Sequence[str], k: int = 5, unit: str = "char") -> tuple[np.ndarray, np.ndarray]:
    """``shingle_hashes`` of many texts at once, flat: (hashes uint32 [S], offsets int64 [n_docs + 1]).

    Document d's hashes are ``hashes[offsets[d]:offsets[d + 1]]``, sorted and unique, equal to
    ``shingle_hashes(texts[d], k, unit)``. For char shingles: ``shingle_windows``, then one sort of
    (doc << 32 | hash) keys dedups every document.
    """
    n_docs = len(texts)
    if unit != "char":
        sets = [shingle_hashes(t, k, unit) for t in texts]
        offsets = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum([x.size for x in sets], out=offsets[1:])
        return (np.concatenate(sets) if sets else np.empty(0, np.uint32)), offsets
    windows, win_offsets = shingle_windows(texts, k)
    doc = np.repeat(np.arange(n_docs, dtype=np.uint64), np.diff(win_offsets))
    key = np.sort((doc << np.uint64(32)) | windows)  # np.sort (SIMD) + adjacent-difference mask: ~5x np.unique
    key = key[np.r_[True, key[1:] != key[:-1]]] if key.size else key
    offsets = np.searchsorted(key >> np.uint64(32), np.arange(n_docs + 1, dtype=np.uint64)).astype(np.int64)
    return (key & _MAX32).astype(np.uint32), offsets


def minhash_signatures_flat(
    hashes: np.ndarray, offsets: np.ndarray, num_perm: int = 128, seed: int = 1, chunk: int = 1 << 13
) -> np.ndarray:
    """MinHash signatures from flat shingle hashes (as ``shingle_hashes_batch`` returns): [n_docs, num_perm] uint32.

    h_i(x) = ((a_i·x + b_i) mod 2^64) >> 32; an empty document gets all 0xFFFFFFFF. Computed as a [num_perm, S]
    block over whole documents of about ``chunk`` shingles, written into one reused buffer (8 MiB at the defaults;
    a much larger block is memory-bound), reduced with ``np.minimum.reduceat`` along its contiguous axis. The
    ``>> 32`` is applied after the min (a monotone map commutes with min), saving a pass over the block.
    """
    a, b = permutations(num_perm, seed)
    a, b = a[:, None], b[:, None]
    sizes = np.diff(offsets)
    out = np.full((sizes.size, num_perm), 0xFFFFFFFF, dtype=np.uint32)
    nonempty = np.flatnonzero(sizes)
    buf = np.empty(0, dtype=np.uint64)
    start = 0
    while start < nonempty.size:
        # documents nonempty[start:stop], about `chunk` shingles in all (at least one document)
        stop = max(start + 1, int(np.searchsorted(offsets[nonempty + 1], offsets[nonempty[start]] + chunk, "right")))
        docs = nonempty[start:stop]
        lo, hi = offsets[docs[0]], offsets[docs[-1] + 1]
        if buf.size < num_perm * (hi - lo):
            buf = np.empty(num_perm * (hi - lo), dtype=np.uint64)
        hv = np.multiply(a, hashes[lo:hi].astype(np.uint64)[None, :], out=buf[: num_perm * (hi - lo)].reshape(num_perm, -1))
        hv += b
        out[docs] = (np.minimum.reduceat(hv, offsets[docs] - lo, axis=1) >> np.uint64(32)).T
        start = stop
    return out


def minhash_signatures(
    shingle_sets: Sequence[np.ndarray], num_perm: int = 128, seed: int = 1, chunk: int = 1 << 13
) -> np.ndarray:
    """MinHash signatures for many documents at once: shape [n_docs, num_perm] uint32 (see
    ``minhash_signatures_flat``; an empty document gets all 0xFFFFFFFF)."""
    offsets = np.zeros(len(shingle_sets) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in shingle_sets], out=offsets[1:])
    flat = np.concatenate([np.asarray(x, dtype=np.uint32) for x in shingle_sets]) if len(shingle_sets) else None
    return minhash_signatures_flat(flat if flat is not None else np.empty(0, np.uint32), offsets, num_perm, seed, chunk)


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


def pair_jaccards(hashes: np.ndarray, offsets: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Exact Jaccard of many document pairs at once: float64 [n_pairs].

    ``hashes``/``offsets``: sorted unique shingle sets, flat (as ``shingle_hashes_batch`` returns); ``pairs``: [n, 2]
    row indices into them. The two sets of every pair are concatenated under key (pair << 32 | hash); after one sort
    a shared shingle is an adjacent equal key, so |A∩B| is a count and |A∪B| = |A| + |B| − |A∩B|. Two empty sets
    have Jaccard 1.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    sizes = np.diff(offsets)
    left, right = sizes[pairs[:, 0]], sizes[pairs[:, 1]]
    inter = np.zeros(len(pairs), dtype=np.int64)
    if len(pairs):
        docs = pairs.ravel()  # a0, b0, a1, b1, ...: each pair's two sets side by side
        n = sizes[docs]
        gather = np.arange(n.sum(), dtype=np.int64) + np.repeat(offsets[docs] - (np.cumsum(n) - n), n)
        pair = np.repeat(np.arange(len(pairs), dtype=np.uint64), left + right)
        key = np.sort((pair << np.uint64(32)) | hashes[gather].astype(np.uint64))
        dup = np.flatnonzero(key[1:] == key[:-1])  # within one set hashes are unique, so a repeat is shared
        inter = np.bincount((key[dup] >> np.uint64(32)).astype(np.int64), minlength=len(pairs))
    union = left + right - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


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


def edge_clusters(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of an undirected graph given as edges [E, 2] (int ids), vectorized (no Python per edge).

    Returns (ids [n], roots [n]): every id that appears in an edge, sorted, and the smallest id of its component
    (the same sets and roots as ``UnionFind``). Hook each edge's larger root under its smaller root, then pointer
    jumping until every node points at its root; repeat until no edge joins two roots (O(log n) rounds in practice;
    the component's minimum can only ever point at itself, so it ends as the root).
    """
    edges = np.asarray(edges).reshape(-1, 2)
    ids = np.unique(edges)
    a, b = np.searchsorted(ids, edges[:, 0]), np.searchsorted(ids, edges[:, 1])
    parent = np.arange(ids.size)
    while True:
        ra, rb = parent[a], parent[b]
        join = ra != rb
        if not join.any():
            return ids, ids[parent]
        np.minimum.at(parent, np.maximum(ra, rb)[join], np.minimum(ra, rb)[join])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
