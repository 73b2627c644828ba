"""Exact duplicates on Ray: the first occurrence (smallest uid) of each canonical-record hash wins.

Only (64-bit key prefix, uid) pairs travel: one Ray task per CPU takes its share (key mod shards) of every block
from the object store, sorts it and returns the uids that are not the first of their key. The driver receives the
removed uids only (proportional to the duplicates, not to the rows). A 64-bit prefix of SHA-256 collides for two
distinct records with probability about n²/2^65 (< 3e-8 at a million rows).
"""

from __future__ import annotations

import numpy as np


def key_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{uid, key (hex sha256)} → {uid int64, h uint64 (the key's first 64 bits)}."""
    keys = batch["key"]
    h = np.fromiter((int(str(k)[:16], 16) for k in keys), dtype=np.uint64, count=len(keys))
    return {"uid": np.asarray(batch["uid"], dtype=np.int64), "h": h}


def shard_duplicates(shard: int, shards: int, *blocks: dict[str, np.ndarray]) -> np.ndarray:
    """The uids of this shard's rows (h mod shards == shard) that repeat an earlier (smaller-uid) row's key."""
    h = np.concatenate([np.asarray(b["h"], dtype=np.uint64) for b in blocks] or [np.empty(0, np.uint64)])
    uid = np.concatenate([np.asarray(b["uid"], dtype=np.int64) for b in blocks] or [np.empty(0, np.int64)])
    mine = h % np.uint64(shards) == np.uint64(shard)
    h, uid = h[mine], uid[mine]
    order = np.lexsort((uid, h))
    h, uid = h[order], uid[order]
    repeat = np.r_[False, h[1:] == h[:-1]] if h.size else np.empty(0, bool)
    return uid[repeat]


def find_exact_duplicates(ds, num_partitions: int | None = None) -> np.ndarray:
    """Removed uids (sorted int64) of a Ray Dataset with columns ``uid`` (unique) and ``key``."""
    import ray

    if num_partitions is None:
        num_partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))
    blocks = ds.map_batches(key_rows, batch_format="numpy", batch_size=8192).to_numpy_refs()
    task = ray.remote(num_cpus=1)(shard_duplicates)
    parts = ray.get([task.remote(s, num_partitions, *blocks) for s in range(num_partitions)])
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)
