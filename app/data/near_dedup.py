"""Distributed MinHash near-duplicate detection on Ray Data (the math lives in app.core.minhash).

1. ``map_batches``: shingles → vectorized MinHash signatures → LSH band keys; one (bucket, id) row per band.
2. hash-shuffle on bucket (``repartition(keys=["bucket"])``) so every bucket lies in one block; a vectorized pass
   per block (sort by bucket, find runs of ≥2) emits candidate pairs. Only (bucket, id) pairs travel, no text.
3. the texts of the documents in some candidate pair (usually a small fraction) go to the object store once; Ray
   tasks verify each unique pair with the exact Jaccard of its shingle sets.
4. verified edges go into a ``UnionFind`` Ray actor; each cluster keeps its smallest id (deterministic: the
   earliest input row) and removes the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.core.minhash import (
    UnionFind,
    band_keys,
    jaccard,
    minhash_signatures_flat,
    optimal_bands,
    shingle_hashes_batch,
)

_ALL_PAIRS_UP_TO = 16  # buckets up to this size emit every pair; larger ones a star on the first id + a chain


@dataclass(frozen=True)
class MinHashParams:
    """Near-dup settings: Jaccard threshold, signature length, shingle unit and size, hash seed."""

    threshold: float = 0.8
    num_perm: int = 128
    shingle: str = "char"
    shingle_size: int = 5
    seed: int = 1
    fn_weight: float = 0.95  # LSH band choice favours recall: exact Jaccard verification removes false positives

    @property
    def bands_rows(self) -> tuple[int, int]:
        return optimal_bands(self.threshold, self.num_perm, 1.0 - self.fn_weight, self.fn_weight)


@dataclass
class NearDupResult:
    """clusters: kept id -> removed ids (sorted); candidates: unique pairs verified; verified: pairs ≥ threshold."""

    clusters: dict[int, list[int]] = field(default_factory=dict)
    candidates: int = 0
    verified: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def removed(self) -> set[int]:
        return {r for members in self.clusters.values() for r in members}


def bucket_rows(batch: dict[str, np.ndarray], p: MinHashParams, bands: int, rows: int) -> dict[str, np.ndarray]:
    """Documents {id, text} → one row per (document, band): {bucket int64, id int64}."""
    hashes, offsets = shingle_hashes_batch([str(t) for t in batch["text"]], p.shingle_size, p.shingle)
    keys = band_keys(minhash_signatures_flat(hashes, offsets, p.num_perm, p.seed), bands, rows)  # [n, bands] uint64
    band_salt = (np.arange(bands, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    return {
        "bucket": (keys ^ band_salt[None, :]).reshape(-1).view(np.int64),
        "id": np.repeat(np.asarray(batch["id"], dtype=np.int64), bands),
    }


def candidate_pairs(block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All (bucket, id) rows of some buckets → unique candidate pairs (a < b) of ids sharing a bucket.

    Buckets of exactly two rows (nearly all the multi-member ones) are turned into pairs in one vectorized step;
    only larger buckets take the per-bucket path.
    """
    bucket, ids = np.asarray(block["bucket"]), np.asarray(block["id"])
    if bucket.size < 2:
        return {"a": np.empty(0, np.int64), "b": np.empty(0, np.int64)}
    order = np.lexsort((ids, bucket))
    bucket, ids = bucket[order], ids[order]
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    sizes = np.diff(np.r_[starts, bucket.size])
    two = starts[sizes == 2]
    a, b = [ids[two]], [ids[two + 1]]  # sorted by id within a bucket, so a <= b
    for s, n in zip(starts[sizes > 2], sizes[sizes > 2]):
        members = np.unique(ids[s : s + n])
        if members.size <= _ALL_PAIRS_UP_TO:
            i, j = np.triu_indices(members.size, k=1)
            a.append(members[i]), b.append(members[j])
        else:
            a.append(np.r_[np.repeat(members[0], members.size - 1), members[1:-1]])
            b.append(np.r_[members[1:], members[2:]])
    a, b = np.concatenate(a), np.concatenate(b)
    keep = a != b
    if not keep.any():
        return {"a": np.empty(0, np.int64), "b": np.empty(0, np.int64)}
    pairs = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)
    return {"a": pairs[:, 0], "b": pairs[:, 1]}


def verify_pairs(pairs: np.ndarray, texts: dict[int, str], p: MinHashParams) -> np.ndarray:
    """Keep the pairs (shape [n, 2]) whose exact shingle Jaccard ≥ threshold; returns shape [m, 2]."""
    if not len(pairs):
        return pairs
    docs = np.unique(pairs)
    hashes, offsets = shingle_hashes_batch([texts[int(i)] for i in docs], p.shingle_size, p.shingle)
    row = {int(d): k for k, d in enumerate(docs)}

    def sh(i: int) -> np.ndarray:
        k = row[i]
        return hashes[offsets[k] : offsets[k + 1]]

    keep = [jaccard(sh(int(x)), sh(int(y))) >= p.threshold for x, y in pairs]
    return pairs[np.asarray(keep, dtype=bool)]


def _rows_with_ids(batch: dict[str, np.ndarray], ids: np.ndarray) -> dict[str, np.ndarray]:
    keep = np.isin(np.asarray(batch["id"], dtype=np.int64), ids)
    return {"id": np.asarray(batch["id"])[keep], "text": np.asarray(batch["text"])[keep]}


def _remote_classes():
    import ray

    @ray.remote(num_cpus=0)
    class UnionFindActor:
        """Holds the union-find over verified edges; ``clusters()`` returns root -> members."""

        def __init__(self):
            self.uf = UnionFind()

        def add_edges(self, edges: np.ndarray) -> int:
            for x, y in edges.tolist():
                self.uf.union(x, y)
            return len(edges)

        def clusters(self) -> dict[int, list[int]]:
            return self.uf.clusters()

    @ray.remote(num_cpus=1)
    def verify_task(pairs: np.ndarray, texts: dict[int, str], p: MinHashParams) -> np.ndarray:
        return verify_pairs(pairs, texts, p)

    return UnionFindActor, verify_task


def find_near_duplicates(ds, params: MinHashParams, num_partitions: int | None = None) -> NearDupResult:
    """Near-duplicate clusters of a Ray Dataset with columns ``id`` (int64, unique) and ``text`` (str).

    ``num_partitions``: hash-shuffle partitions of the bucket grouping (None: 2 per cluster CPU; more partitions
    than cores only adds task overhead).
    """
    import time

    import ray

    t0 = time.perf_counter()
    bands, rows = params.bands_rows
    if num_partitions is None:
        num_partitions = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    buckets = ds.map_batches(bucket_rows, fn_kwargs={"p": params, "bands": bands, "rows": rows},
                             batch_size=1024, batch_format="numpy")
    pair_ds = buckets.repartition(num_partitions, keys=["bucket"]).map_batches(
        candidate_pairs, batch_size=None, batch_format="numpy")
    parts = [(b["a"], b["b"]) for b in pair_ds.iter_batches(batch_size=None, batch_format="numpy")]
    result = NearDupResult()
    pairs = np.unique(np.stack([np.concatenate([a for a, _ in parts] or [np.empty(0, np.int64)]),
                                np.concatenate([b for _, b in parts] or [np.empty(0, np.int64)])], axis=1), axis=0)
    result.candidates = int(len(pairs))
    result.seconds["signatures_and_buckets_s"] = time.perf_counter() - t0
    if not len(pairs):
        return result
    t1 = time.perf_counter()
    involved = np.unique(pairs)
    needed = ds.map_batches(_rows_with_ids, fn_kwargs={"ids": involved}, batch_size=4096, batch_format="numpy")
    texts_ref = ray.put({int(i): str(t) for b in needed.iter_batches(batch_size=None, batch_format="numpy")
                         for i, t in zip(b["id"], b["text"])})
    UnionFindActor, verify_task = _remote_classes()
    n_chunks = max(1, min(64, len(pairs) // 2000))
    edges = ray.get([verify_task.remote(chunk, texts_ref, params) for chunk in np.array_split(pairs, n_chunks)])
    edges = np.concatenate(edges)
    result.verified = int(len(edges))
    uf = UnionFindActor.remote()
    ray.get(uf.add_edges.remote(edges))
    clusters = ray.get(uf.clusters.remote())
    ray.kill(uf)
    result.clusters = {int(root): [int(m) for m in members if m != root] for root, members in clusters.items()}
    result.seconds["verify_and_union_s"] = time.perf_counter() - t1
    return result
