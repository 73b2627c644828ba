"""`rayalign dedup IN.jsonl --text-field text --threshold 0.8 --out DIR`: MinHash near-dup dedup of one JSONL file.

Writes ``DIR/kept.jsonl`` (the input lines that survive, unchanged, in input order) and ``DIR/clusters.jsonl``
(one line per cluster: the kept line id and the removed ids; ids are 1-based input line numbers, or the value of
``--id-field``). Runs on Ray Data (local cluster unless ``--address``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.commands import say

HELP = "near-duplicate (MinHash LSH + Jaccard) dedup of a JSONL file: writes kept.jsonl and clusters.jsonl"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="JSONL file (.gz ok)")
    p.add_argument("--text-field", default="text", help="field holding the text to compare")
    p.add_argument("--id-field", default=None, help="field naming each row in clusters.jsonl (default: line number)")
    p.add_argument("--threshold", type=float, default=0.8, help="Jaccard threshold (default 0.8)")
    p.add_argument("--num-perm", type=int, default=128, help="MinHash permutations")
    p.add_argument("--shingle", choices=["char", "word"], default="char", help="shingle unit")
    p.add_argument("--shingle-size", type=int, default=5, help="k of the k-gram shingles")
    p.add_argument("--seed", type=int, default=1, help="MinHash seed")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--address", default="local", help="Ray address (local starts a private cluster)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local cluster")


def run(args: argparse.Namespace) -> int:
    import ray

    from app.config.common import RaySpec
    from app.data.errors import DataError
    from app.data.near_dedup import MinHashParams, find_near_duplicates
    from app.data.readers import iter_file_rows
    from app.launch.runtime import init_ray

    if not 0 < args.threshold <= 1:
        raise DataError(f"--threshold must be in (0, 1], got {args.threshold}")
    src = Path(args.input)
    if not src.is_file():
        raise DataError(f"{src}: no such file")
    lines: dict[int, bytes] = {}
    docs = []
    names: dict[int, str] = {}
    for n, payload in iter_file_rows(src.read_bytes(), "jsonl"):
        try:
            row = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(f"{src} line {n}: invalid JSON") from None
        text = row.get(args.text_field) if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise DataError(f"{src} line {n}: field {args.text_field!r} missing or not a string")
        lines[n] = payload
        names[n] = str(row.get(args.id_field, n)) if args.id_field else n
        docs.append({"id": n, "text": text})
    init_ray(RaySpec(address=args.address, num_cpus=args.num_cpus))
    params = MinHashParams(args.threshold, args.num_perm, args.shingle, args.shingle_size, args.seed)
    result = find_near_duplicates(ray.data.from_items(docs), params)
    removed = result.removed
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "kept.jsonl", "wb") as fh:
        for n, payload in lines.items():
            if n not in removed:
                fh.write(payload + b"\n")
    with open(out / "clusters.jsonl", "w", encoding="utf-8") as fh:
        for kept in sorted(result.clusters):
            members = result.clusters[kept]
            fh.write(json.dumps({"kept": names[kept], "removed": [names[m] for m in members], "size": len(members) + 1}) + "\n")
    sizes = sorted((len(m) + 1 for m in result.clusters.values()), reverse=True)
    say(args, json.dumps({"rows": len(docs), "kept": len(docs) - len(removed), "removed": len(removed),
                          "clusters": len(result.clusters), "largest_clusters": sizes[:5],
                          "candidate_pairs": result.candidates, "verified_pairs": result.verified, "out": str(out)}))
    return 0
