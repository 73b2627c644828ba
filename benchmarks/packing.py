"""Packing efficiency on GSM8K train at max_length 512 with SmolLM2's chat template: rayalign's packer vs BFD, trl and padding.

    python benchmarks/packing.py [--max-length 512]

Tokenizes every GSM8K train item exactly as the ingest pipeline does (ChatML, assistant-only labels), then reports
real tokens / total tokens (fixed max_length windows) for (a) one example per row padded to max_length (the naive
figure), (b) padded to the longest example of each batch of 8 (dynamic padding), (c) first-fit in input order
(greedy concatenation), (d) best-fit-decreasing (the previous packer), (e) trl 1.16 ``pack_dataset(strategy="bfd")``
with its default map batch of 1,000 examples and (f) over the whole dataset in one batch, (g) rayalign's
``pack_sequences`` (app/core/packing.py). Every packer keeps examples whole (none here exceeds max_length, so trl's
truncation never fires). ``per_block``: ``pack_sequences`` run separately on consecutive blocks of 1,024–8,192
examples in input order, as the streaming ingest packs (``pack_block_rows``), and its cost in points against
packing all examples at once. Also: the volume lower bound ceil(tokens / max_length) and the time each packer takes.
Writes benchmarks/results/packing.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from app.core.packing import (  # noqa: E402
    pack_best_fit_decreasing,
    pack_sequences,
    packing_efficiency,
    padded_efficiency,
)


def greedy_in_order(lengths: list[int], cap: int) -> int:
    bins, room = 0, 0
    for n in lengths:
        if n > room:
            bins, room = bins + 1, cap
        room -= n
    return bins


def trl_windows(input_ids: list[list[int]], cap: int, batch_size: int) -> int:
    from datasets import Dataset
    from trl import pack_dataset

    packed = pack_dataset(Dataset.from_dict({"input_ids": input_ids}), cap, strategy="bfd",
                          map_kwargs={"batch_size": batch_size})
    assert sum(len(x) for x in packed["input_ids"]) == sum(len(x) for x in input_ids)  # nothing truncated
    return len(packed)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


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
    input_ids, tok_s = timed(lambda: [chat.sft(normalize(r, "sft", "gsm8k"))["input_ids"] for r in rows])
    lengths = [len(x) for x in input_ids]
    cap = args.max_length
    bfd, bfd_s = timed(lambda: len(pack_best_fit_decreasing(lengths, cap)))
    ours, ours_s = timed(lambda: len(pack_sequences(lengths, cap)))
    trl_1k, trl_1k_s = timed(lambda: trl_windows(input_ids, cap, 1000))
    trl_all, trl_all_s = timed(lambda: trl_windows(input_ids, cap, len(input_ids)))
    dyn = sum(max(lengths[i : i + 8]) * len(lengths[i : i + 8]) for i in range(0, len(lengths), 8))
    lower = -(-sum(lengths) // cap)
    packers = {
        "rayalign_pack_sequences": (ours, ours_s),
        "best_fit_decreasing": (bfd, bfd_s),
        "trl_bfd_whole_dataset": (trl_all, trl_all_s),
        "trl_bfd_default_batches_of_1000": (trl_1k, trl_1k_s),
        "greedy_in_order": (greedy_in_order(lengths, cap), None),
    }
    out = {
        "examples": len(lengths),
        "max_length": cap,
        "tokens": sum(lengths),
        "mean_length": sum(lengths) / len(lengths),
        "examples_over_half_window": sum(1 for n in lengths if 2 * n > cap),
        "shortest_example": min(lengths),
        "lower_bound_windows": lower,
        "lower_bound_efficiency": packing_efficiency(lengths, lower, cap),
        "padded_to_max_length": padded_efficiency(lengths, cap),
        "dynamic_padding_batch8": sum(lengths) / dyn,
        "packers": {k: {"windows": w, "efficiency": packing_efficiency(lengths, w, cap), "seconds": s}
                    for k, (w, s) in packers.items()},
        "tokenize_s": tok_s,
    }
    out["packing_efficiency"] = out["packers"]["rayalign_pack_sequences"]["efficiency"]
    # the ingest pipeline packs per block of consecutive examples (IngestConfig.pack_block_rows) inside Ray Data
    out["per_block"] = {}
    for block in (1024, 2048, 4096, 8192):
        (w, sec) = timed(lambda: sum(len(pack_sequences(lengths[i : i + block], cap))
                                     for i in range(0, len(lengths), block)))
        eff = packing_efficiency(lengths, w, cap)
        out["per_block"][str(block)] = {"windows": w, "efficiency": eff, "seconds": sec,
                                        "points_below_global": 100 * (out["packing_efficiency"] - eff)}
        print(f"  per block of {block:5d} examples: {eff:7.2%} ({w} windows, "
              f"{100 * (out['packing_efficiency'] - eff):.2f} points below global)")
    print(f"GSM8K train: {out['examples']} examples, {out['tokens']} tokens, mean {out['mean_length']:.1f}, "
          f"max_length {cap}, {out['examples_over_half_window']} examples > half a window")
    print(f"  {'naive: padded to max_length':34s} {out['padded_to_max_length']:7.2%}")
    print(f"  {'dynamic padding (batches of 8)':34s} {out['dynamic_padding_batch8']:7.2%}")
    for k, r in out["packers"].items():
        sec = f"{r['seconds'] * 1000:8.0f} ms" if r["seconds"] is not None else ""
        print(f"  {k:34s} {r['efficiency']:7.2%}  {r['windows']:5d} windows {sec}")
    print(f"  {'lower bound ceil(tokens/max_length)':34s} {out['lower_bound_efficiency']:7.2%}  {lower:5d} windows")
    print(f"packed vs padded: {out['packing_efficiency']:.2%} vs {out['padded_to_max_length']:.2%} "
          f"({out['packing_efficiency'] / out['padded_to_max_length']:.2f}x fewer tokens); "
          f"{bfd - ours} windows fewer than BFD")
    dest = ROOT / "benchmarks" / "results" / "packing.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
