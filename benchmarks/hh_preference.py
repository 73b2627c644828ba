"""Learning result on HH-RLHF harmless (80/20 split), SmolLM2-135M, CPU-sized budget: reward-model held-out pair
accuracy, and DPO held-out preference accuracy + margin, before vs after. One driver, one Ray start.

    python benchmarks/hh_preference.py                       # defaults below; ~minutes on an idle 2-core machine
    python benchmarks/hh_preference.py --train-pairs 400 --eval-pairs 200 --epochs 2

Writes benchmarks/results/hh_preference.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact-parent", default=str(ROOT / ".rayalign" / "datasets"))
    ap.add_argument("--max-length", type=int, default=192, help="keep only pairs this short (CPU budget)")
    ap.add_argument("--train-pairs", type=int, default=96)
    ap.add_argument("--eval-pairs", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reward-lr", type=float, default=5e-4)
    ap.add_argument("--dpo-lr", type=float, default=5e-4)
    ap.add_argument("--only", choices=["reward", "dpo"], default=None)
    args = ap.parse_args()

    from app.config.common import RaySpec
    from app.config.dpo import DPOConfig
    from app.config.ingest import IngestConfig
    from app.config.loader import load_config
    from app.config.reward import RewardConfig
    from app.launch.preference import fit_preference
    from app.launch.runtime import init_ray

    for attempt in range(5):  # a loaded shared machine can miss Ray's 30 s raylet start-up deadline
        try:
            init_ray(RaySpec(address="local", num_cpus=2))
            break
        except Exception as exc:  # noqa: BLE001
            print(f"ray start attempt {attempt + 1} failed: {exc}", flush=True)
    artifact = Path(args.artifact_parent) / "hh-preference"
    t0 = time.perf_counter()
    if not (artifact / "manifest.json").is_file():
        from app.data.pipeline import run_ingest

        cfg = load_config(ROOT / "configs/ingest/smollm2_hh_preference.yaml", IngestConfig, ["validation_fraction=0.2", "max_length=384"])
        run_ingest(cfg, out_dir=args.artifact_parent)
    ingest_s = time.perf_counter() - t0
    common = [f"data.artifact={artifact}", f"data.max_length={args.max_length}", f"data.max_pairs={args.train_pairs}",
              f"data.max_eval_pairs={args.eval_pairs}", f"train.epochs={args.epochs}", f"train.batch_size={args.batch}",
              "train.checkpoint_every=1000", "train.log_every=2", "ray.address=local"]
    result = {"artifact": str(artifact), "ingest_s": ingest_s, "settings": vars(args)}
    if args.only in (None, "reward"):
        t = time.perf_counter()
        rm = fit_preference("reward", load_config(ROOT / "configs/reward/smollm2_hh_lora.yaml", RewardConfig, [*common, f"train.lr={args.reward_lr}"]))
        result["reward"] = {k: rm["metrics"].get(k) for k in ("eval_before/accuracy", "eval/accuracy", "eval_before/margin", "eval/margin", "eval/pairs", "step")}
        result["reward"] |= {"seconds": time.perf_counter() - t, "output_dir": rm["output_dir"]}
        print(json.dumps(result["reward"], indent=2), flush=True)
    if args.only in (None, "dpo"):
        t = time.perf_counter()
        dpo = fit_preference("dpo", load_config(ROOT / "configs/dpo/smollm2_hh_lora.yaml", DPOConfig, [*common, f"train.lr={args.dpo_lr}"]))
        result["dpo"] = {k: dpo["metrics"].get(k) for k in ("eval_before/accuracy", "eval/accuracy", "eval_before/margin", "eval/margin", "eval/pairs", "step")}
        result["dpo"] |= {"seconds": time.perf_counter() - t, "output_dir": dpo["output_dir"]}
        print(json.dumps(result["dpo"], indent=2), flush=True)
    out = ROOT / "benchmarks" / "results" / "hh_preference.json"
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
