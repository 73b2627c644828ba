"""Distributed MinHash near-duplicate detection on Ray (the math lives in app.core.minhash; signatures from rensa).

The input Ray Dataset (``id``, ``text``) is materialized once; its blocks, in ``groups`` of about ``batch_size``
documents, are what every later Ray task reads straight from the object store (one Ray Data executor pass per
stage cost seconds of fixed start-up on a small cluster; a task over block refs costs milliseconds):

1. ``sign_group`` (one task per group): char k-shingles as contiguous rows (``shingle_rows``, numpy) → MinHash
   signatures by rensa's Rust kernel (``RMinHash.digest_matrix_from_flat_token_hashes``, one thread per task) →
   LSH band keys; returns the (bucket, id) rows and the signatures.
2. ``shard_task`` (one per CPU): its share (bucket mod shards) of every group's buckets, sorted; ids sharing a
   bucket become candidate pairs; a pair whose signature agreement is far below the threshold (5 standard
   deviations of the estimator; a pair at the threshold falls there with probability < 1e-6) is dropped before
   the exact check. Only (bucket, id) rows and signatures travel, no text. The surviving pairs stay in the object
   store, split by a hash of the pair into one part per verify task (``route_pairs``), so the same pair found in
   two shards meets itself in one verify task and the driver never holds the pairs (tens of millions at 1M rows).
3. ``involved_task``: the ids in any surviving pair; ``shingle_group``: their exact shingle sets (usually a
   fraction of the documents); ``verify_task``: its pairs from every shard, deduplicated, exact Jaccard of each
   (``pair_jaccards``, vectorized); returns the verified edges and how many pairs it checked.
4. union-find over the verified edges (on the driver, vectorized: ``edge_clusters``; edges ∝ near-duplicates);
   each cluster keeps its smallest id (deterministic: the earliest input row) and removes the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.core.minhash import band_keys, edge_clusters, optimal_bands, pair_jaccards, shingle_hashes_batch, shingle_rows

_VERIFY_CHUNK = 4_000_000  # shingles per pair_jaccards call (its sort keys: 32 MB), so memory is bounded per task
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
    """clusters: kept id -> removed ids (sorted); candidates: LSH candidate pairs; checked: pairs whose exact
    Jaccard was computed; verified: pairs ≥ threshold."""

    clusters: dict[int, list[int]] = field(default_factory=dict)
    candidates: int = 0
    checked: int = 0  # candidates left after the signature-agreement filter, verified exactly
    verified: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def removed(self) -> set[int]:
        return {r for members in self.clusters.values() for r in members}


def signatures(texts: list[str], p: MinHashParams) -> np.ndarray:
    """MinHash signatures of documents, shape [n, num_perm] uint32, computed by rensa's ``RMinHash`` over the
    shingle hashes (char: ``shingle_rows``; word: ``shingle_hashes_batch``). Runs rensa on one thread."""
    import itertools
    import os

    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before rensa's thread pool starts: one task = one CPU
    import rensa

    if p.shingle == "char":
        hashes, offsets = shingle_rows(texts, p.shingle_size)
    else:
        hashes, offsets = shingle_hashes_batch(texts, p.shingle_size, p.shingle)
        hashes = hashes.astype(np.uint64)
    if not texts:
        return np.empty((0, p.num_perm), np.uint32)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets.astype(np.uint64), p.num_perm, p.seed)
    flat = np.fromiter(itertools.chain.from_iterable(matrix.to_rows()), dtype=np.uint32, count=len(texts) * p.num_perm)
    return flat.reshape(len(texts), p.num_perm)


def bucket_rows(ids: np.ndarray, sig: np.ndarray, bands: int, rows: int) -> dict[str, np.ndarray]:
    """Signatures [n, num_perm] → one row per (document, band): {bucket int64, id int64} (bands salted apart)."""
    keys = band_keys(sig, bands, rows)  # [n, bands] uint64
    band_salt = (np.arange(bands, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    return {"bucket": (keys ^ band_salt[None, :]).reshape(-1).view(np.int64),
            "id": np.repeat(np.asarray(ids, dtype=np.int64), bands)}


def estimate_floor(p: MinHashParams) -> float:
    """Signature agreement below which a pair cannot plausibly reach the threshold: t − 5·sqrt(t(1 − t)/num_perm)."""
    t = p.threshold
    return max(0.0, t - 5.0 * float(np.sqrt(t * (1.0 - t) / p.num_perm)))


def _table_of(tables) -> tuple[np.ndarray, list[str]]:
    import pyarrow as pa

    tables = [t if isinstance(t, pa.Table) else pa.Table.from_pandas(t, preserve_index=False) for t in tables]
    table = pa.concat_tables(tables) if len(tables) != 1 else tables[0]
    return table.column("id").to_numpy().astype(np.int64), table.column("text").to_pylist()


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


def shard_candidate_pairs(shard: int, shards: int, buckets: list[dict], sigs: list[dict], floor: float
                          ) -> tuple[np.ndarray, int]:
    """This shard's rows (bucket mod shards == shard) of every group → (pairs [n, 2] whose signature agreement is
    ≥ ``floor``, number of LSH candidate pairs before that filter)."""
    bucket = np.concatenate([b["bucket"] for b in buckets] or [np.empty(0, np.int64)])
    ids = np.concatenate([b["id"] for b in buckets] or [np.empty(0, np.int64)])
    mine = bucket.view(np.uint64) % np.uint64(shards) == np.uint64(shard)
    pairs = candidate_pairs({"bucket": bucket[mine], "id": ids[mine]})
    pairs = np.stack([pairs["a"], pairs["b"]], axis=1)
    if not len(pairs):
        return pairs, 0
    # the signatures stay in their groups (zero-copy from the object store); only the rows a chunk needs are gathered
    sig_ids = np.concatenate([s["id"] for s in sigs])
    group = np.repeat(np.arange(len(sigs)), [len(s["id"]) for s in sigs])
    row = np.concatenate([np.arange(len(s["id"])) for s in sigs])
    order = np.argsort(sig_ids, kind="stable")
    where = [order[np.searchsorted(sig_ids, pairs[:, side], sorter=order)] for side in (0, 1)]
    agree = np.empty(len(pairs))
    for lo in range(0, len(pairs), 8192):  # bounded temporaries
        a, b = (_gather(sigs, group[w[lo : lo + 8192]], row[w[lo : lo + 8192]]) for w in where)
        agree[lo : lo + 8192] = (a == b).mean(axis=1)
    return pairs[agree >= floor], int(len(pairs))


def _gather(sigs: list[dict], group: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Signature rows ``row`` of groups ``group`` (parallel arrays) → [n, num_perm]."""
    out = np.empty((len(row), sigs[0]["sig"].shape[1]), np.uint32)
    for g in np.unique(group):
        mask = group == g
        out[mask] = sigs[g]["sig"][row[mask]]
    return out


def verify_pairs(pairs: np.ndarray, sets: list[dict], p: MinHashParams) -> np.ndarray:
    """Keep the pairs (shape [n, 2]) whose exact shingle Jaccard ≥ threshold; returns shape [m, 2].

    ``sets``: {id, hashes, offsets} pieces as ``shingle_group`` returns them, covering every id in ``pairs``.
    """
    if not len(pairs):
        return pairs
    ids = np.concatenate([s["id"] for s in sets])
    sizes = np.concatenate([np.diff(s["offsets"]) for s in sets])
    hashes = np.concatenate([s["hashes"] for s in sets])
    offsets = np.zeros(sizes.size + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    order = np.argsort(ids, kind="stable")
    rows = order[np.searchsorted(ids, pairs.ravel(), sorter=order)].reshape(-1, 2)
    work = np.cumsum(sizes[rows[:, 0]] + sizes[rows[:, 1]])  # shingles each pair adds to pair_jaccards' sort
    cuts = np.searchsorted(work, np.arange(_VERIFY_CHUNK, int(work[-1]), _VERIFY_CHUNK), side="right")
    keep = np.concatenate([pair_jaccards(hashes, offsets, chunk) >= p.threshold  # bounded temporaries per chunk
                           for chunk in np.split(rows, cuts) if len(chunk)])
    return pairs[keep]


def route_pairs(pairs: np.ndarray, parts: int) -> list[np.ndarray]:
    """Pairs [n, 2] → ``parts`` arrays of pairs by a hash of the (a, b) pair (the same pair always lands in the same
    part, whichever shard found it)."""
    if parts == 1 or not len(pairs):
        return [pairs] + [pairs[:0]] * (parts - 1)
    with np.errstate(over="ignore"):
        h = pairs[:, 0].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ pairs[:, 1].astype(np.uint64)
    part = (h >> np.uint64(17)) % np.uint64(parts)
    return [pairs[part == np.uint64(k)] for k in range(parts)]


def shingle_group(needed: np.ndarray, p: MinHashParams, *tables) -> dict[str, np.ndarray]:
    """The exact shingle sets of the documents of these blocks whose id is in ``needed``: {id, hashes, offsets}."""
    ids, texts = _table_of(tables)
    keep = np.flatnonzero(np.isin(ids, needed))
    hashes, offsets = shingle_hashes_batch([texts[i] for i in keep], p.shingle_size, p.shingle)
    return {"id": ids[keep], "hashes": hashes, "offsets": offsets}


def sign_group(p: MinHashParams, bands: int, rows: int, *tables) -> tuple[dict, dict]:
    """Blocks of {id, text} → ({bucket, id} rows, {id, sig}) (steps 1 of the module docstring)."""
    ids, texts = _table_of(tables)
    sig = signatures(texts, p)
    return bucket_rows(ids, sig, bands, rows), {"id": ids, "sig": sig}


def _remote_functions():
    import ray

    sign = ray.remote(num_cpus=1, num_returns=2)(sign_group)
    shingle = ray.remote(num_cpus=1)(shingle_group)

    @ray.remote(num_cpus=1)
    def shard_task(shard: int, shards: int, n: int, floor: float, parts: int, *groups: dict):
        """(LSH candidates, pairs kept, ids in them, *the kept pairs in ``parts`` parts by pair hash)."""
        pairs, candidates = shard_candidate_pairs(shard, shards, list(groups[:n]), list(groups[n:]), floor)
        return (candidates, int(len(pairs)), np.unique(pairs), *route_pairs(pairs, parts))

    @ray.remote(num_cpus=1)
    def involved_task(*ids: np.ndarray) -> np.ndarray:
        return np.unique(np.concatenate(ids)) if ids else np.empty(0, np.int64)

    @ray.remote(num_cpus=1, num_returns=2)
    def verify_task(p: MinHashParams, n_sets: int, *args) -> tuple[np.ndarray, int]:
        """args: ``n_sets`` shingle pieces, then this task's part of every shard's pairs → (edges, pairs checked)."""
        parts = [a for a in args[n_sets:] if len(a)]
        pairs = np.unique(np.concatenate(parts), axis=0) if parts else np.empty((0, 2), np.int64)
        return verify_pairs(pairs, list(args[:n_sets]), p), int(len(pairs))

    return sign, shard_task, involved_task, shingle, verify_task


def find_near_duplicates(ds, params: MinHashParams, num_partitions: int | None = None,
                         batch_size: int = 8192) -> NearDupResult:
    """Near-duplicate clusters of a Ray Dataset with columns ``id`` (int64, unique) and ``text`` (str).

    ``num_partitions``: shards of the bucket grouping (None: one per cluster CPU). ``batch_size``: about this many
    documents per signature task (large groups amortize the per-task cost).
    """
    import time

    import ray

    t0 = time.perf_counter()
    if num_partitions is None:
        num_partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))
    sign, shard_task, involved_task, shingle, verify_task = _remote_functions()
    bundles = list(ds.iter_internal_ref_bundles())  # a materialized dataset: no execution; tasks read id + text
    blocks = [(ref, meta.num_rows or 0) for b in bundles for ref, meta in zip(b.block_refs, b.metadata)]
    groups, current, size = [], [], 0
    for ref, n in blocks:  # consecutive blocks of about batch_size documents, at least one group per CPU
        current.append(ref)
        size += n
        if size >= min(batch_size, max(1, sum(n for _, n in blocks) // num_partitions)):
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    bands, rows = params.bands_rows
    signed = [sign.remote(params, bands, rows, *g) for g in groups]
    bucket_refs, sig_refs = [s[0] for s in signed], [s[1] for s in signed]
    shards = [shard_task.options(num_returns=3 + num_partitions).remote(
        s, num_partitions, len(groups), estimate_floor(params), num_partitions, *bucket_refs, *sig_refs)
        for s in range(num_partitions)]  # the pairs stay in the object store (see the module docstring)
    del signed, bucket_refs, sig_refs
    result = NearDupResult()
    counts = ray.get([out[0] for out in shards] + [out[1] for out in shards])
    result.candidates = sum(counts[:num_partitions])
    kept = sum(counts[num_partitions:])
    result.seconds["signatures_and_buckets_s"] = time.perf_counter() - t0
    if not kept:
        return result
    t1 = time.perf_counter()
    involved = involved_task.remote(*[out[2] for out in shards])
    sets = [shingle.remote(involved, params, *g) for g in groups]
    verified = [verify_task.remote(params, len(sets), *sets, *[out[3 + v] for out in shards])
                for v in range(num_partitions)]
    del shards, involved
    edges = np.concatenate([e for e in ray.get([v[0] for v in verified])]).reshape(-1, 2)
    result.checked = sum(ray.get([v[1] for v in verified]))
    result.verified = int(len(edges))
    ids, roots = edge_clusters(edges)  # vectorized union-find: no Python object per edge on the driver
    gone = ids != roots
    order = np.lexsort((ids[gone], roots[gone]))
    roots, members = roots[gone][order], ids[gone][order]
    starts = np.flatnonzero(np.r_[True, roots[1:] != roots[:-1]]) if roots.size else np.empty(0, np.int64)
    result.clusters = {r: m.tolist() for r, m in zip(roots[starts].tolist(), np.split(members, starts[1:]))}
    result.seconds["verify_and_union_s"] = time.perf_counter() - t1
    return result
