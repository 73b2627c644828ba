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

Systems, all with exact-Jaccard verification of their LSH candidates and union-find (same work end to end):
- ``datasketch`` / ``datasketch_per_cpu``: ``MinHash.bulk`` signatures in one process / one forked process per CPU;
  ``MinHashLSH`` insertion session + queries in the main process (one Python object).
- ``rensa`` / ``rensa_per_cpu``: Python shingles, bulk ``RMinHash.from_token_sets`` in one process / one per CPU
  (``RAYON_NUM_THREADS=1``: one thread per process), ``RMinHashLSH`` insert_many + query_all. Its time without the
  verification is reported too (``docs_per_s_per_core_without_verification``; the figure the issue quoted).
- ``rayalign``: ``find_near_duplicates`` on a Ray Dataset already in the object store, on a cluster already started
  (``--num-cpus``); Ray start-up, dataset upload and a warm-up call are reported separately.
Per core = docs/s ÷ processes (÷ Ray CPUs for rayalign). Writes benchmarks/results/dedup.json; ``--only`` reruns some
systems and keeps the other rows of the existing file.
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


def char_shingles(text: str) -> set[str]:
    """The char 5-gram set of the normalized text, in Python (how a user of datasketch or rensa shingles)."""
    norm = normalize_text(text)
    return {norm[k : k + 5] for k in range(max(1, len(norm) - 4))}


def _in_processes(fn, texts: list[str], procs: int) -> list:
    """fn over ``procs`` contiguous chunks of texts, one forked process each (results concatenated in order)."""
    if procs <= 1:
        return fn(texts)
    import multiprocessing as mp

    bounds = np.linspace(0, len(texts), procs + 1).astype(int)
    with mp.get_context("fork").Pool(procs) as pool:
        parts = pool.map(fn, [texts[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    return [x for part in parts for x in part]


def _verified_edges(candidates, texts: list[str], threshold: float, sets: dict[int, set] | None = None) -> list:
    """Exact Jaccard of the candidate pairs (Python sets, built for the documents involved only)."""
    sets = {} if sets is None else sets
    edges = []
    for i, j in candidates:
        a = sets.get(i) or sets.setdefault(i, char_shingles(texts[i]))
        b = sets.get(j) or sets.setdefault(j, char_shingles(texts[j]))
        if len(a & b) / len(a | b) >= threshold:
            edges.append((min(i, j), max(i, j)))
    return edges


def _datasketch_hashvalues(texts: list[str]) -> list[tuple[str, np.ndarray]]:
    from datasketch import MinHash

    shingles = ([g.encode("utf-8") for g in char_shingles(t)] for t in texts)
    return [(m.scheme, m.hashvalues) for m in MinHash.bulk(shingles, num_perm=128, seed=1)]


def run_datasketch(texts: list[str], threshold: float, num_perm: int, procs: int = 1) -> tuple[set[int], dict]:
    """datasketch: MinHash.bulk signatures in ``procs`` processes, MinHashLSH insertion session + queries and exact
    verification of the candidates in this process (its LSH is one Python object). Returns (removed, seconds)."""
    from datasketch import LeanMinHash, MinHashLSH

    assert num_perm == 128
    t = time.perf_counter()
    values = _in_processes(_datasketch_hashvalues, texts, procs)
    sign_s = time.perf_counter() - t
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.05, 0.95))  # same band choice as rayalign
    mhs = [LeanMinHash(seed=1, hashvalues=v, scheme=scheme) for scheme, v in values]
    with lsh.insertion_session() as session:
        for i, m in enumerate(mhs):
            session.insert(i, m)
    candidates = {(min(i, j), max(i, j)) for i, m in enumerate(mhs) for j in lsh.query(m) if j != i}
    edges = _verified_edges(sorted(candidates), texts, threshold)
    return removed_from_edges(edges), {"signatures_s": sign_s, "total_s": time.perf_counter() - t}


def _char_windows(text: str) -> list[str]:
    """Every char 5-gram window of the normalized text, repeats kept (a MinHash ignores them; cheaper than a set)."""
    norm = normalize_text(text)
    return [norm[k : k + 5] for k in range(max(1, len(norm) - 4))]


def _rensa_minhashes(texts: list[str]) -> list:
    import rensa

    return rensa.RMinHash.from_token_sets([_char_windows(t) for t in texts], 128, 1)


def run_rensa(texts: list[str], threshold: float, num_perm: int, bands: int, procs: int = 1) -> tuple[set[int], dict]:
    """rensa (Rust, one thread per process): Python char 5-gram windows, bulk ``RMinHash.from_token_sets`` in
    ``procs`` processes, ``RMinHashLSH`` insert_many + query_all with the same bands, then exact verification of the
    candidates (Python sets) and union-find. Returns (removed, seconds: signatures, + LSH, + verification)."""
    import rensa

    assert num_perm == 128
    t = time.perf_counter()
    mhs = _in_processes(_rensa_minhashes, texts, procs)
    sign_s = time.perf_counter() - t
    lsh = rensa.RMinHashLSH(threshold, num_perm, bands)
    lsh.insert_many(mhs)
    candidates = {(min(i, j), max(i, j)) for i, found in enumerate(lsh.query_all(mhs)) for j in found if j != i}
    lsh_s = time.perf_counter() - t
    edges = _verified_edges(sorted(candidates), texts, threshold)
    removed = removed_from_edges(edges)
    return removed, {"signatures_s": sign_s, "signatures_lsh_s": lsh_s, "total_s": time.perf_counter() - t,
                     "candidate_pairs": len(candidates)}


def precision_recall(found: set[int], truth: set[int]) -> tuple[float, float]:
    tp = len(found & truth)
    return (tp / len(found) if found else 1.0), (tp / len(truth) if truth else 1.0)


def _row(removed: set[int], truth: set[int], seconds: float, n: int, cpus: int, **extra) -> dict:
    p, r = precision_recall(removed, truth)
    return dict(seconds=seconds, docs_per_s=n / seconds, cpus=cpus, docs_per_s_per_core=n / seconds / cpus,
                removed=len(removed), precision=p, recall=r, **extra)


def run_rayalign(texts: list[str], args) -> tuple[set[int], dict]:
    import ray

    from app.config.common import RaySpec
    from app.data.near_dedup import MinHashParams, find_near_duplicates
    from app.launch.runtime import init_ray

    t = time.perf_counter()
    init_ray(RaySpec(num_cpus=args.num_cpus))
    ray_start_s = time.perf_counter() - t
    t = time.perf_counter()
    dataset = ray.data.from_items([{"id": i, "text": x} for i, x in enumerate(texts)],
                                  override_num_blocks=4 * args.num_cpus).materialize()
    upload_s = time.perf_counter() - t
    params = MinHashParams(args.threshold, args.num_perm)
    t = time.perf_counter()
    find_near_duplicates(dataset.limit(200).materialize(), params)  # warm workers (imports), as the baselines' are
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    res = find_near_duplicates(dataset, params)
    seconds = time.perf_counter() - t
    ray.shutdown()
    return res.removed, {"seconds": seconds, "candidate_pairs": res.candidates, "checked_pairs": res.checked,
                         "verified_pairs": res.verified, "stage_seconds": res.seconds, "ray_start_s": ray_start_s,
                         "dataset_upload_s": upload_s, "warm_up_s": warm_s,
                         "docs_per_s_including_start_upload": len(texts) / (seconds + ray_start_s + upload_s + warm_s)}


SYSTEMS = ("rayalign", "rensa", "rensa_per_cpu", "datasketch", "datasketch_per_cpu")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=80_000)
    ap.add_argument("--variant-fraction", type=float, default=0.1)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--only", nargs="+", choices=SYSTEMS, help="run only these systems; their rows replace the "
                    "same rows of an existing results JSON (the others are kept)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["RAYON_NUM_THREADS"] = "1"  # rensa: one thread per process, so per-core figures are per core
    from app.config.paths import shared_dir
    from app.data.near_dedup import MinHashParams

    shared = shared_dir()
    if shared is None:
        print("needs ../shared (GSM8K)")
        return 1
    texts = build_corpus(shared, args.docs, args.variant_fraction)
    n = len(texts)
    print(f"corpus: {n} documents, {sum(len(t) for t in texts) / n:.0f} chars on average", flush=True)
    truth, n_edges, n_cand, truth_s = cached_ground_truth(texts, args.threshold)
    print(f"ground truth (exact Jaccard, all pairs by prefix filtering: {n_cand} candidates): {n_edges} pairs >= "
          f"{args.threshold}, {len(truth)} docs to remove ({truth_s:.1f}s)", flush=True)
    bands = MinHashParams(args.threshold, args.num_perm).bands_rows[0]
    dest = ROOT / "benchmarks" / "results" / "dedup.json"
    old = json.loads(dest.read_text()) if dest.exists() else {}
    systems = {k: v for k, v in old.get("systems", {}).items() if args.only and k not in args.only}
    cpus = args.num_cpus
    for name in args.only or SYSTEMS:
        procs = cpus if name.endswith("per_cpu") else 1
        if name == "rayalign":
            removed, extra = run_rayalign(texts, args)
            systems[name] = _row(removed, truth, extra.pop("seconds"), n, cpus, **extra)
        elif name.startswith("rensa"):
            removed, sec = run_rensa(texts, args.threshold, args.num_perm, bands, procs)
            systems[name] = _row(removed, truth, sec["total_s"], n, procs, stage_seconds=sec,
                                 docs_per_s_per_core_without_verification=n / sec["signatures_lsh_s"] / procs)
        else:
            removed, sec = run_datasketch(texts, args.threshold, args.num_perm, procs)
            systems[name] = _row(removed, truth, sec["total_s"], n, procs, stage_seconds=sec)
        r = systems[name]
        print(f"{name:20s} {r['seconds']:7.2f}s {r['docs_per_s']:8.0f} docs/s {r['docs_per_s_per_core']:8.0f} /core "
              f"removed {r['removed']} P {r['precision']:.4f} R {r['recall']:.4f}", flush=True)
    out = {
        "docs": n, "threshold": args.threshold, "num_perm": args.num_perm, "shingles": "char 5-grams",
        "bands_rows": list(MinHashParams(args.threshold, args.num_perm).bands_rows), "num_cpus": cpus,
        "load_average_1m": os.getloadavg()[0], "truth_pairs": n_edges, "truth_removed": len(truth),
        "truth_seconds": truth_s, "systems": systems,
    }
    ra = systems.get("rayalign")
    if ra:
        out["per_core_ratio"] = {k: ra["docs_per_s_per_core"] / v["docs_per_s_per_core"]
                                 for k, v in systems.items() if k != "rayalign"}
        if "rensa" in systems:
            out["per_core_ratio_vs_rensa_without_verification"] = (
                ra["docs_per_s_per_core"] / systems["rensa"]["docs_per_s_per_core_without_verification"])
        print("per-core ratio rayalign / baseline:", {k: round(v, 2) for k, v in out["per_core_ratio"].items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
