"""Near-duplicate dedup: rayalign (Ray Data + vectorized MinHash) vs datasketch (MinHash + MinHashLSH), one corpus.

    python benchmarks/dedup.py [--docs 80000] [--variant-fraction 0.1] [--num-cpus 2] [--only rayalign]

Corpus (built from GSM8K train+test, deterministic): the 8,792 real items (question + answer), recombined items
(question i + the answer of another item j: distinct documents that share a third to a half of their text with
others, the hard negatives), and lightly edited copies of random documents (word drops, swaps and substitutions at
2–15 % of words, so their Jaccard to the original straddles the threshold). Both systems use char 5-gram shingles of
the same normalized text, num_perm=128, threshold 0.8, the same recall-favouring band choice (weights fp 0.05 /
fn 0.95 → 16 bands × 8 rows), exact-Jaccard verification of LSH candidates and union-find keeping the smallest id.

Ground truth: exact Jaccard ≥ threshold over ALL pairs, found with the ℓ-prefix filter (Bayardo et al. 2007;
Wang, Li & Feng 2012): with shingles ordered rarest first, a pair with J ≥ t has overlap ≥ ⌈t·|x|⌉, so its first
ℓ common shingles lie within the first |x| − ⌈t·|x|⌉ + ℓ of each document; pairs sharing fewer than ℓ prefix
shingles cannot qualify, so the candidate set is complete. Candidates are verified exactly; clusters by union-find.
It takes minutes at 80k documents, so its result is cached under ``<rayalign home>/cache/dedup_truth/``, keyed by a
hash of the corpus and the threshold (delete the folder to recompute).

Timing: datasketch is one Python process (its MinHash/LSH are single-threaded). rayalign's figure is
``find_near_duplicates`` on a Ray Dataset already in the object store, on a cluster already started; Ray start-up
and the dataset upload are reported separately. Writes benchmarks/results/dedup.json (not with ``--only rayalign``,
the quick loop for working on rayalign's side: no datasketch, so no ratio).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from app.core.minhash import UnionFind, normalize_text, shingle_hashes_batch  # noqa: E402


def build_corpus(shared: Path, docs: int, variant_fraction: float, seed: int = 0) -> list[str]:
    rows = []
    for name in ("train.jsonl", "test.jsonl"):
        rows += [json.loads(l) for l in open(shared / "data" / "gsm8k" / name, encoding="utf-8")]
    texts = [r["question"] + "\n" + r["answer"] for r in rows]
    rng = random.Random(seed)
    n_variants = int(docs * variant_fraction)
    while len(texts) < docs - n_variants:
        i, j = rng.randrange(len(rows)), rng.randrange(len(rows))
        if i != j:
            texts.append(rows[i]["question"] + "\n" + rows[j]["answer"])
    vocab = " ".join(texts[:2000]).split()
    base = len(texts)
    for _ in range(n_variants):
        words = texts[rng.randrange(base)].split()
        rate = rng.uniform(0.02, 0.15)
        out = []
        for w in words:
            r = rng.random()
            if r < rate / 3:
                continue  # drop
            out.append(rng.choice(vocab) if r < 2 * rate / 3 else w)  # substitute / keep
            if rng.random() < rate / 3 and len(out) > 1:
                out[-1], out[-2] = out[-2], out[-1]  # swap
        texts.append(" ".join(out))
    rng.shuffle(texts)
    return texts


def removed_from_edges(edges) -> set[int]:
    uf = UnionFind()
    for a, b in edges:
        uf.union(int(a), int(b))
    return {m for members in uf.clusters().values() for m in members[1:]}


def ground_truth(texts: list[str], threshold: float, ell: int = 3) -> tuple[set[int], int, int]:
    """Exact all-pairs Jaccard join by ℓ-prefix filtering; returns (docs to remove, pairs ≥ threshold, candidates)."""
    from scipy import sparse

    hashes, offsets = shingle_hashes_batch(texts)
    n = len(texts)
    sizes = np.diff(offsets)
    assert threshold * sizes.min() >= ell, "a qualifying pair must overlap in at least ℓ shingles"
    vocab, token, df = np.unique(hashes, return_inverse=True, return_counts=True)
    rank = np.empty(vocab.size, np.int64)
    rank[np.lexsort((vocab, df))] = np.arange(vocab.size)  # rarest first, ties by hash
    doc = np.repeat(np.arange(n), sizes)
    order = np.lexsort((rank[token], doc))  # each document's shingles, rarest first
    prefix = sizes - np.ceil(threshold * sizes - 1e-9).astype(np.int64) + ell
    within = np.arange(hashes.size) - np.repeat(offsets[:-1], sizes)
    keep = within < np.repeat(prefix, sizes)
    p_tok, p_doc = rank[token[order]][keep], doc[order][keep]
    by_tok = np.lexsort((p_doc, p_tok))
    p_tok, p_doc = p_tok[by_tok], p_doc[by_tok]
    starts = np.flatnonzero(np.r_[True, p_tok[1:] != p_tok[:-1]])
    group = np.diff(np.r_[starts, p_tok.size])
    pairs = []
    for g in np.unique(group[group > 1]):  # all groups of one size at once
        members = p_doc[starts[group == g][:, None] + np.arange(g)[None, :]]  # [groups, g]
        i, j = np.triu_indices(g, k=1)
        pairs.append(np.stack([members[:, i].ravel(), members[:, j].ravel()], axis=1))
    code = np.concatenate(pairs) @ np.array([n, 1]) if pairs else np.empty(0, np.int64)
    code, shared = np.unique(code, return_counts=True)
    code = code[shared >= ell]  # a qualifying pair shares at least ℓ prefix shingles
    cand = np.stack([code // n, code % n], axis=1)
    small, large = np.minimum(sizes[cand[:, 0]], sizes[cand[:, 1]]), np.maximum(sizes[cand[:, 0]], sizes[cand[:, 1]])
    cand = cand[small >= threshold * large]  # length filter: J ≤ |small| / |large|
    X = sparse.csr_matrix((np.ones(hashes.size, np.float32), token, offsets), shape=(n, vocab.size))
    inter = np.concatenate([np.asarray(X[c[:, 0]].multiply(X[c[:, 1]]).sum(axis=1)).ravel()  # chunks bound memory
                            for c in np.array_split(cand, max(1, len(cand) // 200_000))]) if len(cand) else np.empty(0)
    jac = inter / (sizes[cand[:, 0]] + sizes[cand[:, 1]] - inter)
    edges = cand[jac >= threshold]
    return removed_from_edges(edges.tolist()), int(len(edges)), int(len(cand))


def cached_ground_truth(texts: list[str], threshold: float) -> tuple[set[int], int, int, float]:
    """``ground_truth`` plus its seconds, from the on-disk cache when this corpus and threshold were seen before."""
    from app.config.paths import rayalign_home

    key = hashlib.sha256(json.dumps([threshold, texts]).encode()).hexdigest()[:16]
    path = rayalign_home() / "cache" / "dedup_truth" / f"{key}.json"
    if path.exists():
        c = json.loads(path.read_text())
        return set(c["removed"]), c["pairs"], c["candidates"], c["seconds"]
    t = time.perf_counter()
    removed, pairs, candidates = ground_truth(texts, threshold)
    seconds = time.perf_counter() - t
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"removed": sorted(removed), "pairs": pairs, "candidates": candidates,
                                "seconds": seconds}))
    return removed, pairs, candidates, seconds


def run_datasketch(texts: list[str], threshold: float, num_perm: int) -> set[int]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.05, 0.95))  # same band choice as rayalign
    shingles, edges = [], []
    for i, t in enumerate(texts):
        norm = normalize_text(t)
        grams = {norm[k : k + 5] for k in range(max(1, len(norm) - 4))}
        shingles.append(grams)
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch([g.encode("utf-8") for g in grams])
        for j in lsh.query(m):
            a, b = shingles[i], shingles[j]
            if len(a & b) / len(a | b) >= threshold:
                edges.append((min(i, j), max(i, j)))
        lsh.insert(i, m)
    return removed_from_edges(edges)


def precision_recall(found: set[int], truth: set[int]) -> tuple[float, float]:
    tp = len(found & truth)
    return (tp / len(found) if found else 1.0), (tp / len(truth) if truth else 1.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=80_000)
    ap.add_argument("--variant-fraction", type=float, default=0.1)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--only", choices=["rayalign"], help="skip datasketch and write no JSON (quick iteration)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from app.config.paths import shared_dir

    shared = shared_dir()
    if shared is None:
        print("needs ../shared (GSM8K)")
        return 1
    texts = build_corpus(shared, args.docs, args.variant_fraction)
    n = len(texts)
    print(f"corpus: {n} documents, {sum(len(t) for t in texts) / n:.0f} chars on average")

    if args.only is None:
        t = time.perf_counter()
        ds_removed = run_datasketch(texts, args.threshold, args.num_perm)
        ds_s = time.perf_counter() - t
        print(f"datasketch: {ds_s:.1f}s", flush=True)

    import ray

    from app.config.common import RaySpec
    from app.data.near_dedup import MinHashParams, find_near_duplicates
    from app.launch.runtime import init_ray

    t = time.perf_counter()
    init_ray(RaySpec(num_cpus=args.num_cpus))
    ray_start_s = time.perf_counter() - t
    t = time.perf_counter()
    dataset = ray.data.from_items([{"id": i, "text": x} for i, x in enumerate(texts)]).materialize()
    upload_s = time.perf_counter() - t
    params = MinHashParams(args.threshold, args.num_perm)
    t = time.perf_counter()
    find_near_duplicates(dataset.limit(200).materialize(), params)  # warm workers (imports), as datasketch's are warm
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    res = find_near_duplicates(dataset, params)
    ra_s = time.perf_counter() - t
    ray.shutdown()
    print(f"rayalign: {ra_s:.1f}s (+ Ray start {ray_start_s:.1f}s, upload {upload_s:.1f}s, warm-up {warm_s:.1f}s) "
          f"{res.seconds}", flush=True)

    truth, n_edges, n_cand, truth_s = cached_ground_truth(texts, args.threshold)
    print(f"ground truth (exact Jaccard, all pairs by prefix filtering: {n_cand} candidates): {n_edges} pairs >= "
          f"{args.threshold}, {len(truth)} docs to remove ({truth_s:.1f}s)")

    ra_p, ra_r = precision_recall(res.removed, truth)
    if args.only is not None:
        print(f"rayalign {n / ra_s:.0f} docs/s, removed {len(res.removed)}, precision {ra_p:.4f} recall {ra_r:.4f}")
        return 0
    ds_p, ds_r = precision_recall(ds_removed, truth)
    out = {
        "docs": n,
        "threshold": args.threshold,
        "num_perm": args.num_perm,
        "shingles": "char 5-grams",
        "bands_rows": list(params.bands_rows),
        "num_cpus": args.num_cpus,
        "load_average_1m": os.getloadavg()[0],
        "truth_pairs": n_edges,
        "truth_removed": len(truth),
        "truth_seconds": truth_s,
        "rayalign": {"seconds": ra_s, "docs_per_s": n / ra_s, "removed": len(res.removed), "precision": ra_p,
                     "recall": ra_r, "candidate_pairs": res.candidates, "stage_seconds": res.seconds,
                     "ray_start_s": ray_start_s, "dataset_upload_s": upload_s, "warm_up_s": warm_s,
                     "docs_per_s_including_start_upload": n / (ra_s + ray_start_s + upload_s + warm_s)},
        "datasketch": {"seconds": ds_s, "docs_per_s": n / ds_s, "removed": len(ds_removed), "precision": ds_p,
                       "recall": ds_r},
    }
    out["speedup"] = out["rayalign"]["docs_per_s"] / out["datasketch"]["docs_per_s"]
    print(f"{'':12s} {'docs/s':>9s} {'removed':>8s} {'precision':>9s} {'recall':>7s}")
    for name in ("rayalign", "datasketch"):
        r = out[name]
        print(f"{name:12s} {r['docs_per_s']:9.0f} {r['removed']:8d} {r['precision']:9.4f} {r['recall']:7.4f}")
    print(f"speedup rayalign / datasketch: {out['speedup']:.2f}x on {args.num_cpus} CPUs; including Ray start-up, "
          f"upload and warm-up: {out['rayalign']['docs_per_s_including_start_upload'] / out['datasketch']['docs_per_s']:.2f}x "
          f"(load average {out['load_average_1m']:.1f})")
    dest = ROOT / "benchmarks" / "results" / "dedup.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
