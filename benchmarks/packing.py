"""Packing efficiency on GSM8K train at max_length 512 with SmolLM2's chat template: BFD packing vs naive padding.

    python benchmarks/packing.py [--max-length 512]

Tokenizes every GSM8K train item exactly as the ingest pipeline does (ChatML, assistant-only labels), then reports
real tokens / total tokens for (a) one example per row padded to max_length, (b) padded to the longest example
of each batch of 8 (dynamic padding), (c) best-fit-decreasing packing, (d) first-fit in input order (greedy
concatenation baseline). Writes benchmarks/results/packing.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.packing import pack_best_fit_decreasing, packing_efficiency, padded_efficiency  # noqa: E402


def greedy_in_order(lengths: list[int], cap: int) -> int:
    bins, room = 0, 0
    for n in lengths:
        if n > room:
            bins, room = bins + 1, cap
        room -= n
    return bins


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-length", type=int, default=512)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from app.config.paths import shared_dir
    from app.data.records import normalize
    from app.data.tokenization import ChatTokenizer
    from app.models.loader import resolve_model

    shared = shared_dir()
    rows = [json.loads(l) for l in open(shared / "data" / "gsm8k" / "train.jsonl", encoding="utf-8")]
    chat = ChatTokenizer(AutoTokenizer.from_pretrained(resolve_model("bundled:smollm2-135m-instruct").path), args.max_length)
    t = time.perf_counter()
    lengths = [len(chat.sft(normalize(r, "sft", "gsm8k"))["input_ids"]) for r in rows]
    tok_s = time.perf_counter() - t
    t = time.perf_counter()
    bins = pack_best_fit_decreasing(lengths, args.max_length)
    pack_s = time.perf_counter() - t
    cap = args.max_length
    dyn = sum(max(lengths[i : i + 8]) * len(lengths[i : i + 8]) for i in range(0, len(lengths), 8))
    out = {
        "examples": len(lengths),
        "max_length": cap,
        "tokens": sum(lengths),
        "mean_length": sum(lengths) / len(lengths),
        "padded_to_max_length": padded_efficiency(lengths, cap),
        "dynamic_padding_batch8": sum(lengths) / dyn,
        "greedy_in_order_packing": packing_efficiency(lengths, greedy_in_order(lengths, cap), cap),
        "best_fit_decreasing": packing_efficiency(lengths, len(bins), cap),
        "bfd_windows": len(bins),
        "examples_over_half_window": sum(1 for n in lengths if n > cap // 2),
        "shortest_example": min(lengths),
        "lower_bound_windows": -(-sum(lengths) // cap),
        "tokenize_s": tok_s,
        "pack_s": pack_s,
    }
    print(f"GSM8K train: {out['examples']} examples, {out['tokens']} tokens, mean {out['mean_length']:.1f}, max_length {cap}")
    for k in ("padded_to_max_length", "dynamic_padding_batch8", "greedy_in_order_packing", "best_fit_decreasing"):
        print(f"  {k:26s} {out[k]:7.2%}")
    print(f"  BFD windows {out['bfd_windows']} (lower bound {out['lower_bound_windows']}), packed in {pack_s * 1000:.0f} ms; "
          f"{out['best_fit_decreasing'] / out['padded_to_max_length']:.1f}x fewer tokens than padding")
    dest = ROOT / "benchmarks" / "results" / "packing.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
