"""Learning result on HH-RLHF harmless (80/20 split), SmolLM2-135M-Instruct, CPU-sized budget: reward-model held-out
pair accuracy, and DPO / SimPO / ORPO held-out preference accuracy + margin, before vs after training.

Data: the first --pairs transcripts of ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz go through the platform's
ingest (configs/ingest/smollm2_hh_preference.yaml) with validation_fraction=0.2 and, by default,
length_policy=drop_turns at --max-length: the oldest whole turns of an over-long conversation are dropped until the
pair fits; a pair whose last user turn + response alone is longer is quarantined. The tail is never cut — HH pairs
share a long prefix and differ only in the final Assistant turn, so cutting it could leave two identical "responses".
Then `fit_preference` trains the reward model (LoRA + scalar head, Bradley-Terry) and DPO (LoRA policy, reference =
base, sigmoid loss) on the train split and evaluates on the held-out split before and after. --top-layers N puts the
LoRA adapters on the top N decoder layers only (lora.layers_to_transform): backprop stops there, about 2x cheaper per
step on CPU than adapting all 30 layers of SmolLM2-135M.

    python benchmarks/hh_preference.py --only reward --reward-steps 100   # ~25 min on an idle 2-core machine
    python benchmarks/hh_preference.py --only dpo --dpo-steps 100         # ~40 min (incl. the reference precompute)
    python benchmarks/hh_preference.py --only dpo --dpo-loss simpo --dpo-beta 2.0 --dpo-steps 100   # reference-free:
                                                                          # no precompute; result key "simpo"
    python benchmarks/hh_preference.py --pairs 600 --max-length 160 --length-policy reject
    python benchmarks/hh_preference.py --plot-only       # re-draw the PNG from the JSON

Writes/updates benchmarks/results/hh_preference.json: one key per method (its latest run, with its settings) and
``attempts`` (every run, newest last), so a re-run with other settings never loses an earlier measurement; and
hh_preference.png (held-out accuracy and margin, before vs after, per run).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_artifact(parent: Path, pairs: int, max_length: int, policy: str):
    """Ingest the first ``pairs`` HH-RLHF harmless transcripts (80/20 split, over-long pairs per ``policy``)."""
    from app.config.ingest import IngestConfig
    from app.config.loader import load_config
    from app.config.paths import shared_dir
    from app.data.artifact import load_artifact
    from app.data.pipeline import run_ingest

    name = f"hh-harmless-{pairs}-L{max_length}" + ("" if policy == "reject" else f"-{policy}")
    if (parent / name / "manifest.json").is_file():
        return load_artifact(parent / name)
    src = parent / f"{name}.jsonl"
    parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(shared_dir() / "data/hh-rlhf/harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as f, \
            open(src, "w", encoding="utf-8") as out:
        for k, line in enumerate(f):
            if k == pairs:
                break
            out.write(line)
    cfg = load_config(ROOT / "configs/ingest/smollm2_hh_preference.yaml", IngestConfig, [
        f"name={name}", "validation_fraction=0.2", f"max_length={max_length}", f"length_policy={policy}",
        f"sources=[{{path: '{src}', input_format: hh_rlhf}}]"])
    return run_ingest(cfg, out_dir=parent, progress=False)


def plot_results(result: dict, path: Path) -> None:
    """Held-out accuracy and margin before vs after training: one pair of bars per run in ``attempts``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result.get("attempts") or [{"method": k, **result[k]} for k in ("reward", "dpo") if k in result]

    def label(run: dict) -> str:
        lr = next((o.split("=", 1)[1] for o in run["overrides"] if o.startswith(("optim.lr=", "train.lr="))), "?")
        return f"{run['method']}\nlr {lr}, {run['step']:.0f} steps\n{run['train_pairs']}/{run['eval/pairs']:.0f} pairs"

    fig, axes = plt.subplots(1, 2, figsize=(max(10, 3.0 * len(runs)), 4.2))
    for ax, metric in zip(axes, ("accuracy", "margin")):
        for j, (when, name) in enumerate((("eval_before", "before"), ("eval", "after"))):
            values = [r[f"{when}/{metric}"] for r in runs]
            # accuracy: 95% normal-approximation interval of a proportion over the held-out pairs
            err = ([1.96 * (v * (1 - v) / r["eval/pairs"]) ** 0.5 for v, r in zip(values, runs)] if metric == "accuracy" else None)
            bars = ax.bar([i + (j - 0.5) * 0.38 for i in range(len(runs))], values, 0.38, yerr=err, capsize=3, label=name)
            ax.bar_label(bars, fmt="%.3f", fontsize=8)
        if metric == "accuracy":
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
            ax.set_ylim(0, 1)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xticks(range(len(runs)), [label(r) for r in runs], fontsize=8)
        ax.set_title("held-out pair accuracy (95% interval; train/held-out pairs)" if metric == "accuracy" else "held-out margin (chosen − rejected score)")
        ax.legend(fontsize=8)
    fig.suptitle("SmolLM2-135M on HH-RLHF harmless (80/20), CPU budget", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact-parent", default=str(ROOT / ".rayalign" / "datasets"))
    ap.add_argument("--pairs", type=int, default=2312, help="HH-RLHF harmless transcripts read (2312 = the whole file)")
    ap.add_argument("--max-length", type=int, default=128, help="tokens per side after the length policy (CPU budget)")
    ap.add_argument("--length-policy", choices=["drop_turns", "reject"], default="drop_turns")
    ap.add_argument("--top-layers", type=int, default=8, help="LoRA on the top N decoder layers only (0: all layers)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--reward-steps", type=int, default=100, help="optimizer steps (batch --batch pairs each)")
    ap.add_argument("--dpo-steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reward-lr", type=float, default=1e-3)
    ap.add_argument("--dpo-lr", type=float, default=5e-4)
    ap.add_argument("--dpo-beta", type=float, default=0.1)
    ap.add_argument("--dpo-loss", choices=["sigmoid", "simpo", "orpo"], default="sigmoid",
                    help="dpo.loss_type of the DPO job; simpo/orpo are reference-free and stored under their own key")
    ap.add_argument("--simpo-gamma", type=float, default=0.5, help="SimPO's target margin γ (with --dpo-loss simpo)")
    ap.add_argument("--only", choices=["reward", "dpo"], default=None)
    ap.add_argument("--plot-only", action="store_true", help="re-draw the PNG from the stored JSON, no training")
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results" / "hh_preference.json"
    if args.plot_only:
        plot_results(json.loads(out.read_text()), out.with_suffix(".png"))
        return 0

    from app.config.common import RaySpec
    from app.config.dpo import DPOConfig
    from app.config.loader import load_config
    from app.config.reward import RewardConfig
    from app.launch.preference import fit_preference
    from app.launch.runtime import init_ray

    init_ray(RaySpec(address="local", num_cpus=2))
    t0 = time.perf_counter()
    artifact = build_artifact(Path(args.artifact_parent), args.pairs, args.max_length, args.length_policy)
    result = json.loads(out.read_text()) if out.is_file() else {}
    if result.get("artifact", {}).get("id") != artifact.id:  # keep the first run's ingest time when the artifact was reused
        result["artifact"] = {"id": artifact.id, "splits": artifact.splits, "rows_read": artifact.manifest["rows_read"],
                              "rows_rejected": artifact.manifest["rows_rejected"], "ingest_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(result["artifact"]), flush=True)
    common = [f"data.artifact={artifact.path}", f"train.epochs={args.epochs}", f"train.micro_batch_size={args.batch}",
              "checkpoint.every_steps=1000", "train.log_every=5", "ray.address=local", "data.max_length=null"]
    if args.top_layers:
        from transformers import AutoConfig

        from app.models.loader import resolve_model

        n_layers = AutoConfig.from_pretrained(resolve_model("bundled:smollm2-135m-instruct").path).num_hidden_layers
        common.append(f"lora.layers_to_transform={list(range(n_layers - args.top_layers, n_layers))}")
    keys = ("eval_before/accuracy", "eval/accuracy", "eval_before/margin", "eval/margin", "eval_before/loss", "eval/loss",
            "eval/pairs", "step")
    jobs = {"reward": (RewardConfig, "configs/reward/smollm2_hh_lora.yaml",
                       [f"optim.lr={args.reward_lr}", f"train.max_steps={args.reward_steps}"]),
            "dpo": (DPOConfig, "configs/dpo/smollm2_hh_lora.yaml",
                    [f"optim.lr={args.dpo_lr}", f"dpo.beta={args.dpo_beta}", f"train.max_steps={args.dpo_steps}",
                     f"dpo.loss_type={args.dpo_loss}"] + ([f"dpo.simpo_gamma={args.simpo_gamma}"] if args.dpo_loss == "simpo" else []))}
    for kind, (schema, path, extra) in jobs.items():
        if args.only not in (None, kind):
            continue
        t = time.perf_counter()
        fit = fit_preference(kind, load_config(ROOT / path, schema, [*common, *extra]))
        kind = args.dpo_loss if kind == "dpo" and args.dpo_loss != "sigmoid" else kind  # the result key
        result[kind] = {k: fit["metrics"].get(k) for k in keys}
        result[kind] |= {"seconds": round(time.perf_counter() - t, 1), "config": path, "overrides": [*common[1:], *extra],
                         "artifact_id": artifact.id, "pairs_read": args.pairs, "max_length": args.max_length,
                         "length_policy": args.length_policy,
                         "train_pairs": artifact.splits.get("train")}
        print(kind, json.dumps(result[kind], indent=2), flush=True)
        result.setdefault("attempts", []).append({"method": kind, **result[kind]})  # every run kept, newest last
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    plot_results(result, out.with_suffix(".png"))
    import ray

    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
