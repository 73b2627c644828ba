"""Distributed MinHash near-duplicate detection on Ray Data (math in app.core.minhash).

Stages, each a Ray Data operator spread over the cluster:

1. ``map_batches``: shingle + vectorized MinHash signature + LSH band keys for a batch of documents.
2. explode each document into one row per band: bucket = (band, band key) hash.
3. ``groupby(bucket).map_groups``: documents sharing a bucket are candidates; each candidate pair is verified with
   the exact Jaccard of its shingle sets, only in the first band where the pair collides (no repeated work).
4. verified edges stream into a ``UnionFind`` Ray actor; every cluster keeps its smallest id (deterministic: the
   earliest row of the input) and removes the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.core.minhash import UnionFind, band_keys, jaccard, minhash_signatures, optimal_bands, shingle_hashes

_BIG_BUCKET = 64  # beyond this many members, compare each member only with the bucket's first and previous member


@dataclass(frozen=True)
class MinHashParams:
    threshold: float = 0.8
    num_perm: int = 128
    shingle: str = "char"
    shingle_size: int = 5
    seed: int = 1

    @property
    def bands_rows(self) -> tuple[int, int]:
        return optimal_bands(self.threshold, self.num_perm)


@dataclass
class NearDupResult:
    """clusters: kept id -> removed ids (sorted); edges: verified candidate pairs; candidates: pairs checked."""

    clusters: dict[int, list[int]] = field(default_factory=dict)
    candidates: int = 0
    verified: int = 0

    @property
    def removed(self) -> set[int]:
        return {r for members in self.clusters.values() for r in members}


def _signature_batch(batch: dict[str, np.ndarray], p: MinHashParams, bands: int, rows: int) -> dict[str, np.ndarray]:
    shingles = [shingle_hashes(str(t), p.shingle_size, p.shingle) for t in batch["text"]]
    keys = band_keys(minhash_signatures(shingles, p.num_perm, p.seed), bands, rows)  # [n, bands] uint64
    n = len(shingles)
    band_idx = np.tile(np.arange(bands, dtype=np.uint64), n)
    bucket = (keys.reshape(-1) ^ (band_idx * np.uint64(0x9E3779B97F4A7C15))).view(np.int64)
    return {
        "bucket": bucket,
        "band": band_idx.astype(np.int16),
        "id": np.repeat(batch["id"].astype(np.int64), bands),
        "text": np.repeat(np.asarray(batch["text"], dtype=object), bands),
        "keys": np.repeat(keys.view(np.int64), bands, axis=0),
    }


def _verify_group(group: dict[str, np.ndarray], p: MinHashParams) -> dict[str, np.ndarray]:
    """Verified edges (a < b, jaccard ≥ threshold) of one bucket, plus one row a=b=-1 carrying the pairs checked."""
    n = len(group["id"])
    order = np.argsort(group["id"], kind="stable")
    ids, keys, band = group["id"][order], group["keys"][order], int(group["band"][0])
    a: list[int] = []
    b: list[int] = []
    sims: list[float] = []
    checked = 0
    if n >= 2:
        sh = [shingle_hashes(str(group["text"][i]), p.shingle_size, p.shingle) for i in order]
        if n <= _BIG_BUCKET:
            pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        else:
            pairs = [(0, j) for j in range(1, n)] + [(j - 1, j) for j in range(2, n)]
        for i, j in pairs:
            if ids[i] == ids[j] or int(np.argmax(keys[i] == keys[j])) != band:
                continue  # a pair is verified only in the first band where it collides
            checked += 1
            sim = jaccard(sh[i], sh[j])
            if sim >= p.threshold:
                a.append(int(ids[i]))
                b.append(int(ids[j]))
                sims.append(sim)
    return {
        "a": np.asarray(a + [-1], np.int64),
        "b": np.asarray(b + [-1], np.int64),
        "jaccard": np.asarray(sims + [0.0], np.float64),
        "checked": np.asarray([0] * len(a) + [checked], np.int64),
    }


def _union_find_actor():
    import ray

    @ray.remote(num_cpus=0)
    class UnionFindActor:
        """Holds the union-find over verified edges; ``clusters()`` returns root -> members."""

        def __init__(self):
            self.uf = UnionFind()

        def add_edges(self, a: np.ndarray, b: np.ndarray) -> int:
            for x, y in zip(a.tolist(), b.tolist()):
                self.uf.union(x, y)
            return len(a)

        def clusters(self) -> dict[int, list[int]]:
            return self.uf.clusters()

    return UnionFindActor.remote()


def find_near_duplicates(ds, params: MinHashParams, num_partitions: int | None = None) -> NearDupResult:
    """Near-duplicate clusters of a Ray Dataset with columns ``id`` (int64, unique) and ``text`` (str).

    ``num_partitions``: hash-shuffle partitions of the bucket grouping (None: 2 per cluster CPU; Ray's default of
    200 costs ~0.3 s of task overhead each, which dominates on small clusters).
    """
    import ray

    bands, rows = params.bands_rows
    if num_partitions is None:
        num_partitions = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    buckets = ds.map_batches(_signature_batch, fn_kwargs={"p": params, "bands": bands, "rows": rows}, batch_format="numpy")
    edges = buckets.groupby("bucket", num_partitions=num_partitions).map_groups(
        _verify_group, fn_kwargs={"p": params}, batch_format="numpy")
    uf = _union_find_actor()
    result = NearDupResult()
    pending = []
    for batch in edges.iter_batches(batch_size=4096, batch_format="numpy"):
        result.candidates += int(batch["checked"].sum())
        keep = batch["a"] >= 0
        if keep.any():
            result.verified += int(keep.sum())
            pending.append(uf.add_edges.remote(batch["a"][keep], batch["b"][keep]))
    ray.get(pending)
    clusters = ray.get(uf.clusters.remote())
    ray.kill(uf)
    result.clusters = {int(root): [int(m) for m in members if m != root] for root, members in clusters.items()}
    return result
