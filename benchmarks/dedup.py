"""Near-duplicate dedup: rayalign (Ray Data + vectorized MinHash) vs datasketch (MinHash + MinHashLSH), one corpus.

    python benchmarks/dedup.py [--variants 6000] [--num-cpus 2]

Corpus: GSM8K train+test (question + answer) plus lightly edited copies of random items (word drops, swaps and
substitutions at 2–15 % of words, so their Jaccard to the original straddles the threshold). Both systems use
char 5-gram shingles of the same normalized text, num_perm=128, threshold 0.8, exact-Jaccard verification of
LSH candidates and union-find keeping the smallest id, and the same recall-favouring band choice
(weights fp 0.05 / fn 0.95 → 16 bands × 8 rows). Ground truth: exact Jaccard over ALL pairs (sparse
matrix product), clusters by union-find. Reported: docs/s of each (the Ray cluster is started before timing, the
corpus is already in the object store), the ratio, and precision/recall of the removed documents. Writes
benchmarks/results/dedup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.minhash import UnionFind, normalize_text, shingle_hashes  # noqa: E402


def build_corpus(shared: Path, variants: int, seed: int = 0) -> list[str]:
    rows = []
    for name in ("train.jsonl", "test.jsonl"):
        rows += [json.loads(l) for l in open(shared / "data" / "gsm8k" / name, encoding="utf-8")]
    texts = [r["question"] + "\n" + r["answer"] for r in rows]
    rng = random.Random(seed)
    vocab = " ".join(texts[:2000]).split()
    for _ in range(variants):
        words = rng.choice(texts).split()
        rate = rng.uniform(0.02, 0.15)
        out = []
        for w in words:
            r = rng.random()
            if r < rate / 3:
                continue  # drop
            if r < 2 * rate / 3:
                out.append(rng.choice(vocab))  # substitute
            else:
                out.append(w)
            if rng.random() < rate / 3 and len(out) > 1:
                out[-1], out[-2] = out[-2], out[-1]  # swap
        texts.append(" ".join(out))
    rng.shuffle(texts)
    return texts


def removed_from_edges(n: int, edges) -> set[int]:
    uf = UnionFind()
    for a, b in edges:
        uf.union(int(a), int(b))
    return {m for members in uf.clusters().values() for m in members[1:]}


def ground_truth(texts: list[str], threshold: float) -> tuple[set[int], int]:
    """Exact Jaccard over all pairs via a sparse doc × shingle matrix product, in row chunks."""
    from scipy import sparse

    sets = [shingle_hashes(t) for t in texts]
    vocab, inv = np.unique(np.concatenate(sets), return_inverse=True)
    indptr = np.r_[0, np.cumsum([len(s) for s in sets])]
    X = sparse.csr_matrix((np.ones(indptr[-1], np.float32), inv, indptr), shape=(len(sets), len(vocab)))
    sizes = np.diff(indptr).astype(np.float64)
    XT = X.T.tocsc()
    edges = []
    for start in range(0, len(sets), 1000):
        inter = (X[start : start + 1000] @ XT).tocoo()
        i, j, v = inter.row + start, inter.col, inter.data
        keep = i < j
        i, j, v = i[keep], j[keep], v[keep]
        jac = v / (sizes[i] + sizes[j] - v)
        sel = jac >= threshold
        edges += list(zip(i[sel].tolist(), j[sel].tolist()))
    return removed_from_edges(len(texts), edges), len(edges)


def run_datasketch(texts: list[str], threshold: float, num_perm: int) -> set[int]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.05, 0.95))  # same band choice as rayalign
    shingles = []
    for i, t in enumerate(texts):
        norm = normalize_text(t)
        grams = {norm[k : k + 5] for k in range(max(1, len(norm) - 4))}
        shingles.append(grams)
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch([g.encode("utf-8") for g in grams])
        lsh.insert(i, m)
        for j in lsh.query(m):
            if j != i:
                a, b = shingles[i], shingles[j]
                if len(a & b) / len(a | b) >= threshold:
                    edges_ds.append((min(i, j), max(i, j)))
    return removed_from_edges(len(texts), edges_ds)


edges_ds: list[tuple[int, int]] = []


def precision_recall(found: set[int], truth: set[int]) -> tuple[float, float]:
    tp = len(found & truth)
    return (tp / len(found) if found else 1.0), (tp / len(truth) if truth else 1.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=6000)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from app.config.paths import shared_dir

    shared = shared_dir()
    if shared is None:
        print("needs ../shared (GSM8K)")
        return 1
    texts = build_corpus(shared, args.variants)
    n = len(texts)
    print(f"corpus: {n} documents")

    t = time.perf_counter()
    truth, n_edges = ground_truth(texts, args.threshold)
    print(f"ground truth (exact Jaccard, all pairs): {n_edges} pairs >= {args.threshold}, {len(truth)} docs to remove "
          f"({time.perf_counter() - t:.1f}s)")

    t = time.perf_counter()
    ds_removed = run_datasketch(texts, args.threshold, args.num_perm)
    ds_s = time.perf_counter() - t

    import ray

    from app.config.common import RaySpec
    from app.data.near_dedup import MinHashParams, find_near_duplicates
    from app.launch.runtime import init_ray

    init_ray(RaySpec(num_cpus=args.num_cpus))
    dataset = ray.data.from_items([{"id": i, "text": x} for i, x in enumerate(texts)]).materialize()
    params = MinHashParams(args.threshold, args.num_perm)
    find_near_duplicates(dataset.limit(200).materialize(), params)  # warm workers (imports), as datasketch's are warm
    t = time.perf_counter()
    res = find_near_duplicates(dataset, params)
    ra_s = time.perf_counter() - t
    ray.shutdown()

    ra_p, ra_r = precision_recall(res.removed, truth)
    ds_p, ds_r = precision_recall(ds_removed, truth)
    out = {
        "docs": n,
        "threshold": args.threshold,
        "num_perm": args.num_perm,
        "shingles": "char 5-grams",
        "num_cpus": args.num_cpus,
        "load_average_1m": os.getloadavg()[0],
        "truth_removed": len(truth),
        "rayalign": {"seconds": ra_s, "docs_per_s": n / ra_s, "removed": len(res.removed), "precision": ra_p,
                     "recall": ra_r, "candidate_pairs": res.candidates, "stage_seconds": res.seconds},
        "datasketch": {"seconds": ds_s, "docs_per_s": n / ds_s, "removed": len(ds_removed), "precision": ds_p, "recall": ds_r},
    }
    out["speedup"] = out["rayalign"]["docs_per_s"] / out["datasketch"]["docs_per_s"]
    print(f"{'':12s} {'docs/s':>9s} {'removed':>8s} {'precision':>9s} {'recall':>7s}")
    for name in ("rayalign", "datasketch"):
        r = out[name]
        print(f"{name:12s} {r['docs_per_s']:9.0f} {r['removed']:8d} {r['precision']:9.4f} {r['recall']:7.4f}")
    print(f"speedup rayalign / datasketch: {out['speedup']:.2f}x  (load average {out['load_average_1m']:.1f})")
    dest = ROOT / "benchmarks" / "results" / "dedup.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
