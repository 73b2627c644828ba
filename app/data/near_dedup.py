"""Distributed MinHash near-duplicate detection on Ray Data (the math lives in app.core.minhash).

1. ``map_batches``: shingles → vectorized MinHash signatures → LSH band keys; one (bucket, id) row per band.
2. hash partitioning on bucket: one Ray task per shard (one shard per CPU) takes its share (bucket mod shards) of
   every block straight from the object store, sorts it by bucket and emits the pairs of ids sharing a bucket
   (sort-based grouping in numpy). Only (bucket, id) pairs travel, no text. (Ray Data's keyed ``repartition``
   does the same job through aggregator actors it starts on every call: seconds of fixed cost on a small cluster.)
3. the texts of the documents in some candidate pair (usually a small fraction) go to the object store once; Ray
   tasks verify the unique pairs with the exact Jaccard of their shingle sets (``pair_jaccards``, vectorized).
4. verified edges go into a ``UnionFind`` Ray actor (started with step 1, so its start-up overlaps the work);
   each cluster keeps its smallest id (deterministic: the earliest input row) and removes the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.core.minhash import (
    UnionFind,
    band_keys,
    minhash_signatures_flat,
    optimal_bands,
    pair_jaccards,
    shingle_hashes_batch,
    shingle_windows,
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
    texts = [str(t) for t in batch["text"]]
    if p.shingle == "char":  # every window, repeats kept: a minimum ignores them, and no per-document sort
        hashes, offsets = shingle_windows(texts, p.shingle_size)
    else:
        hashes, offsets = shingle_hashes_batch(texts, p.shingle_size, p.shingle)
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


def shard_candidate_pairs(shard: int, shards: int, *blocks: dict[str, np.ndarray]) -> np.ndarray:
    """This shard's rows (bucket mod shards == shard) of every (bucket, id) block → its candidate pairs [n, 2]."""
    bucket = np.concatenate([np.asarray(b["bucket"]) for b in blocks] or [np.empty(0, np.int64)])
    ids = np.concatenate([np.asarray(b["id"]) for b in blocks] or [np.empty(0, np.int64)])
    mine = bucket.view(np.uint64) % np.uint64(shards) == np.uint64(shard)
    pairs = candidate_pairs({"bucket": bucket[mine], "id": ids[mine]})
    return np.stack([pairs["a"], pairs["b"]], axis=1)


def verify_pairs(pairs: np.ndarray, texts: dict[int, str], p: MinHashParams) -> np.ndarray:
    """Keep the pairs (shape [n, 2]) whose exact shingle Jaccard ≥ threshold; returns shape [m, 2]."""
    if not len(pairs):
        return pairs
    docs, rows = np.unique(pairs, return_inverse=True)
    hashes, offsets = shingle_hashes_batch([texts[int(i)] for i in docs], p.shingle_size, p.shingle)
    return pairs[pair_jaccards(hashes, offsets, rows.reshape(-1, 2)) >= p.threshold]


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

    @ray.remote(num_cpus=1)
    def shard_task(shard: int, shards: int, *blocks: dict[str, np.ndarray]) -> np.ndarray:
        return shard_candidate_pairs(shard, shards, *blocks)

    return UnionFindActor, verify_task, shard_task


def find_near_duplicates(ds, params: MinHashParams, num_partitions: int | None = None,
                         batch_size: int = 4096) -> NearDupResult:
    """Near-duplicate clusters of a Ray Dataset with columns ``id`` (int64, unique) and ``text`` (str).

    ``num_partitions``: shards of the bucket grouping (None: one per cluster CPU). ``batch_size``: documents per
    signature batch (large batches amortize the per-task cost; the kernels stay cache-sized inside).
    """
    import time

    import ray

    t0 = time.perf_counter()
    if num_partitions is None:
        num_partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))
    UnionFindActor, verify_task, shard_task = _remote_classes()
    uf = UnionFindActor.remote()  # starts while the signatures are computed
    try:
        return _find(ds, params, num_partitions, batch_size, uf, verify_task, shard_task, t0)
    finally:
        ray.kill(uf)


def _find(ds, params, num_partitions, batch_size, uf, verify_task, shard_task, t0) -> NearDupResult:
    """Steps 1–4 of the module docstring, given the union-find actor and the remote functions."""
    import time

    import ray

    bands, rows = params.bands_rows
    buckets = ds.map_batches(bucket_rows, fn_kwargs={"p": params, "bands": bands, "rows": rows},
                             batch_size=batch_size, batch_format="numpy")
    blocks = buckets.to_numpy_refs()
    parts = ray.get([shard_task.remote(s, num_partitions, *blocks) for s in range(num_partitions)])
    del blocks
    result = NearDupResult()
    pairs = np.unique(np.concatenate(parts), axis=0)
    result.candidates = int(len(pairs))
    result.seconds["signatures_and_buckets_s"] = time.perf_counter() - t0
    if not len(pairs):
        return result
    t1 = time.perf_counter()
    involved = np.unique(pairs)
    needed = ds.map_batches(_rows_with_ids, fn_kwargs={"ids": involved}, batch_size=batch_size, batch_format="numpy")
    texts_ref = ray.put({int(i): str(t) for b in needed.iter_batches(batch_size=None, batch_format="numpy")
                         for i, t in zip(b["id"], b["text"])})
    n_chunks = max(1, min(4 * num_partitions, len(pairs) // 2000))
    edges = np.concatenate(ray.get([verify_task.remote(chunk, texts_ref, params)
                                    for chunk in np.array_split(pairs, n_chunks)]))
    result.verified = int(len(edges))
    ray.get(uf.add_edges.remote(edges))
    clusters = ray.get(uf.clusters.remote())
    result.clusters = {int(root): [int(m) for m in members if m != root] for root, members in clusters.items()}
    result.seconds["verify_and_union_s"] = time.perf_counter() - t1
    return result
