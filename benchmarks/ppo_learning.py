"""Learning result: GRPO on SmolLM2-135M-Instruct + easy GSM8K prompts with a verifiable reward (exact match + format).

    python benchmarks/ppo_learning.py [--run-dir /tmp/ppo-learn] [key=value overrides …]

Runs (or resumes: same ``--run-dir``) ``configs/ppo/smollm2_gsm8k_grpo_cpu.yaml`` through the normal PPO driver, then
compares the mean reward of the first and last ``--window`` iterations (the baseline is the same run's start, i.e.
the base model's own samples) and the largest sequence KL against ``algo.target_kl``. Writes
benchmarks/results/ppo_learning_smollm2.json and the run's reward/KL plot as ppo_learning_smollm2.png.
``--name ppo_learning_calc --config configs/ppo/smollm2_gsm8k_calc_async_cpu.yaml``: the calculator-tool environment
in async mode; the JSON then also has the tool-call rate, tool errors, turns and policy lag per iteration.
A CPU-sized run can be split over several invocations: each resumes from the last checkpoint, and
``--budget-minutes`` stops (checkpoint + plot + summary) after the iteration that crosses the wall-clock budget.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "ppo" / "smollm2_gsm8k_grpo_cpu.yaml"))
    p.add_argument("--run-dir", default="/tmp/rayalign-ppo-learning")
    p.add_argument("--window", type=int, default=4, help="iterations averaged at the start and at the end")
    p.add_argument("--name", default="ppo_learning_smollm2", help="results file stem under benchmarks/results/")
    p.add_argument("--budget-minutes", type=float, default=None, help="stop cleanly after this much wall time")
    p.add_argument("--summarize-only", action="store_true",
                   help="no training: write the summary of the run already in --run-dir (its metrics.jsonl and plot)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides of the config")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from app.config.loader import load_config
    from app.config.ppo import PPOConfig
    from app.launch.runtime import init_ray
    from app.ppo.async_driver import make_driver
    from app.ppo.runner import run_dir_for

    deadline = time.monotonic() + 60 * args.budget_minutes if args.budget_minutes else float("inf")

    class OverBudget(Exception):
        pass

    def stop_when_over_budget(driver, metrics):
        if time.monotonic() > deadline:
            raise OverBudget

    cfg = load_config(args.config, PPOConfig, [f"run.output_dir={args.run_dir}", *args.overrides])
    run_dir = run_dir_for(cfg)
    if args.summarize_only:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        history = [json.loads(line) for line in lines if line.strip()]
    else:
        init_ray(cfg.ray)
        driver = make_driver(cfg, run_dir)
        try:
            try:
                driver.run(on_iteration=stop_when_over_budget)
            except OverBudget:
                print(f"[ppo] wall-clock budget reached at iteration {driver.iteration}; checkpoint + plot", flush=True)
                driver.save()
                driver.export()
            history = driver.history
        finally:
            driver.shutdown()
        import ray

        ray.shutdown()
    w = max(1, min(args.window, len(history) // 2))  # a 1-iteration run compares the iteration with itself
    first, last = history[:w], history[-w:]

    def mean(rows, key):
        return round(statistics.mean(h[key] for h in rows), 4)

    target = cfg.algo.target_kl
    from app.core.rewards import RULE_REWARDS

    result = {
        "config": str(Path(args.config).resolve().relative_to(ROOT)), "overrides": args.overrides, "iterations": len(history),
        "reward_rule": cfg.reward.rule, "reward_definition": " ".join(RULE_REWARDS[cfg.reward.rule].__doc__.split()),
        "response_prefix": cfg.prompts.response_prefix, "max_new_tokens": cfg.rollout.max_new_tokens,
        "lr": cfg.algo.lr,
        "samples_per_iteration": cfg.run.prompts_per_iteration * cfg.rollout.samples_per_prompt,
        "window": w,
        "reward_first": mean(first, "reward_mean"), "reward_last": mean(last, "reward_mean"),
        "exact_match_first": mean(first, "exact_match"), "exact_match_last": mean(last, "exact_match"),
        "format_ok_first": mean(first, "format_ok"), "format_ok_last": mean(last, "format_ok"),
        "kl_max": round(max(h["kl"] for h in history), 4), "target_kl": target,
        "kl_under_target": target is None or max(h["kl"] for h in history) < target,
        "seconds_per_iteration_median": round(statistics.median(h["seconds_iteration"] for h in history), 2),
        "per_iteration": {k: [round(h[k], 4) for h in history]
                          for k in ("reward_mean", "exact_match", "format_ok", "kl", "truncated_frac", "tool_call_rate",
                                    "tool_error_rate", "turns_mean", "policy_lag", "is_ratio_mean") if k in history[0]},
        "history": [{k: v for k, v in h.items() if k != "sample"} for h in history],
        "last_sample": history[-1]["sample"],
    }
    result["reward_ratio_last_vs_first"] = round(result["reward_last"] / max(result["reward_first"], 1e-9), 3)
    print(f"reward {result['reward_first']:.3f} (first {w}) -> {result['reward_last']:.3f} (last {w}) "
          f"= {result['reward_ratio_last_vs_first']:.2f}x; exact match {result['exact_match_first']:.3f} -> "
          f"{result['exact_match_last']:.3f}; format {result['format_ok_first']:.3f} -> {result['format_ok_last']:.3f}; "
          f"max KL {result['kl_max']:.3f} (target {target})")
    out = ROOT / "benchmarks" / "results"
    if "tool_call_rate" in history[0]:
        result |= {"tool_call_rate_first": mean(first, "tool_call_rate"), "tool_call_rate_last": mean(last, "tool_call_rate"),
                   "mode": cfg.algo.mode, "max_staleness": cfg.algo.max_staleness, "env": cfg.rollout.env,
                   "max_turns": cfg.rollout.max_turns}
        print(f"tool-call rate {result['tool_call_rate_first']:.3f} -> {result['tool_call_rate_last']:.3f}")
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    shutil.copyfile(run_dir / "ppo_curves.png", out / f"{args.name}.png")
    print(f"wrote {out / (args.name + '.json')} and {args.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
