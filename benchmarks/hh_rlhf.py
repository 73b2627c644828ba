"""Learning result of the RLHF chain on HH-RLHF harmless (SFT -> reward model -> GRPO against that RM), measured on
held-out prompts from ONE `rayalign pipeline --config configs/pipeline/rlhf.yaml` run; and RLAIF -> DPO on top of it.

    bash .ci/env rayalign pipeline --config configs/pipeline/rlhf.yaml report_dir=R     # ~16 min on 2 cores
    python benchmarks/hh_rlhf.py --report R            # the chain, evaluated on 64 held-out prompts (~4 min)
    python benchmarks/hh_rlhf.py --report R --rlaif    # RLAIF pairs -> DPO -> human held-out pairs (~10 min)
    python benchmarks/hh_rlhf.py --plot-only           # re-draw the PNG from the JSON

Chain. The run splits the HH-RLHF harmless file 80/20 by prompt (ingest ``split_by: prompt``): SFT conversations, RM
pairs and GRPO prompts come from the 80 %; the held-out prompts here are the first --prompts of the prompt artifact's
'validation' split. Each policy - the SFT adapter (GRPO's start: "before") and the GRPO adapter ("after") - samples
--samples replies per prompt with the run's own rollout settings (temperature, max_new_tokens, same seeds for both),
and the run's reward model scores prompt + reply + end of turn, as in training. Reported: mean RM score before vs
after (paired bootstrap 95 % interval of the difference, over prompts); the RM-judged win rate of GRPO vs SFT, paired
per prompt (a prompt's mean score over its samples; ties count half; percentile bootstrap over prompts) and the Wilson
interval of the decisive prompts (ties excluded); KL(GRPO || SFT) on the held-out samples (k1, nats per reply); and
from the run's metrics.jsonl, per iteration: RM score, KL to the reference (vs algo.target_kl), reply length.

RLAIF. --rlaif-prompts train-side prompts (not held out), k replies each from the SFT policy, scored by the run's
RM; best vs worst (score gap >= --min-gap) become AI-labelled pairs (app/data/best_of_n.py, Ray Data); DPO from the
SFT adapter (reference = the SFT adapter) on them; then the human held-out pairs (the RM's validation split, the
first --human-pairs of them) are scored: DPO's implicit-reward accuracy (policy vs reference log-ratio of chosen >
rejected; before training the policy IS the reference: every margin 0, a tie counted half -> 0.5), and the
policy's own log-likelihood preference (mean log-prob per token of chosen > rejected), SFT vs DPO. Does AI feedback
transfer to human labels? Whatever the answer, it is written down.

Writes/updates benchmarks/results/hh_rlhf.json (keys 'chain' and 'rlaif') and hh_rlhf.png.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "hh_rlhf.json"


# ----- reading the pipeline run ---------------------------------------------------------------------------------
def read_run(report: Path) -> dict:
    """The PPO run's resolved config and metrics, the stage timings of report.md, and the RM's lineage."""
    from app.config.loader import load_config
    from app.config.ppo import PPOConfig

    run_dir = report / "ppo"
    cfg = load_config(run_dir / "config.yaml", PPOConfig)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    stages = {}
    text = (report / "report.md").read_text(encoding="utf-8") if (report / "report.md").is_file() else ""
    table = text.split("## Stages", 1)[-1].split("\n## ", 1)[0] if text else ""
    for name, status, seconds in re.findall(r"^\| (\w+) \| (\w+) \| ([\d.]+) \|", table, flags=re.M):
        stages[name] = {"status": status, "seconds": float(seconds)}
    rm_lineage = json.loads((Path(cfg.reward.model_path) / "rayalign_lineage.json").read_text())
    return {"cfg": cfg, "history": history, "stages": stages, "rm_lineage": rm_lineage,
            "passed": text.startswith("# rayalign pipeline") and "PASSED" in text.splitlines()[0] if text else False}


def artifact_by_id(dataset_id: str, report: Path) -> Path:
    """The artifact folder of ``dataset_id``: under <rayalign home>/datasets, or a 'datasets' folder beside the report."""
    from app.config.paths import rayalign_home

    roots = [rayalign_home() / "datasets", report.parent / "datasets"]
    for root in roots:
        for manifest in root.glob("*/*/manifest.json"):
            if json.loads(manifest.read_text()).get("id") == dataset_id:
                return manifest.parent
    raise FileNotFoundError(f"no dataset artifact with id {dataset_id} under {' or '.join(map(str, roots))}")


def policy(base: str, adapter: str, threads: int):
    """The PPO policy class as a plain object (no Ray): HF generate + per-token log-probs with ``adapter``."""
    from app.ppo.actors import PolicyActor

    return PolicyActor(base, {"enabled": True}, {"lr": 1e-4}, seed=0, torch_threads=threads, init_adapter=adapter,
                       reference="base")


def sample(pol, prompts, n: int, max_new_tokens: int, temperature: float, top_p: float, chunk: int) -> list[list[int]]:
    """``n`` replies per prompt (contiguous), ``chunk`` prompts per generate call, seed = chunk index (same for every
    policy: common random numbers)."""
    out: list[list[int]] = []
    for k in range(0, len(prompts), chunk):
        out += pol.generate([p.ids for p in prompts[k:k + chunk]], n, max_new_tokens, temperature, top_p, seed=k)
    return out


def seq_logprobs(pol, prompts, responses: list[list[int]], n: int, chunk: int) -> np.ndarray:
    """Summed log-prob of each reply under ``pol`` [len(responses)]."""
    from app.ppo.batch import build_batch

    sums = []
    for k in range(0, len(responses), chunk * n):
        rows = range(k, min(k + chunk * n, len(responses)))
        batch = build_batch([prompts[i // n].ids for i in rows], [responses[i] for i in rows], pol.pad_id)
        sums.append(pol.logprobs(batch).sum(1).numpy())
    return np.concatenate(sums)


def win_rate(after: np.ndarray, before: np.ndarray) -> dict:
    """Per-prompt outcome 1 / 0.5 / 0 (after's mean score >, =, < before's): mean with a percentile bootstrap over
    prompts (ties half), and the Wilson interval of the decisive prompts (ties excluded)."""
    from app.core.stats import paired_bootstrap, wilson_interval

    outcome = np.where(after > before, 1.0, np.where(after == before, 0.5, 0.0))
    boot = paired_bootstrap(np.stack([outcome, np.ones_like(outcome)]), lambda s: s[..., 0] / s[..., 1], 10_000, seed=0)
    wins, losses = int((outcome == 1).sum()), int((outcome == 0).sum())
    decisive = wilson_interval(wins, wins + losses) if wins + losses else None
    return {"prompts": int(outcome.size), "wins": wins, "losses": losses, "ties": int((outcome == 0.5).sum()),
            "win_rate_ties_half": boot.estimate, "ci95_ties_half": [boot.low, boot.high], "ci_method": boot.method,
            "win_rate_ties_excluded": decisive.estimate if decisive else None,
            "ci95_ties_excluded_wilson": [decisive.low, decisive.high] if decisive else None}


def evaluate_chain(report: Path, n_prompts: int, n_samples: int, chunk: int, threads: int, split: str) -> dict:
    import torch

    from app.core.stats import mean_difference_bootstrap
    from app.models.loader import resolve_model
    from app.models.reward_head import load_reward_model
    from app.ppo.driver import end_of_turn
    from app.ppo.prompts import load_prompts

    t0 = time.perf_counter()
    run = read_run(report)
    cfg, history = run["cfg"], run["history"]
    base = str(resolve_model(cfg.model).path)
    sft_path, ppo_path = cfg.init.adapter, str(report / "ppo" / "adapter")
    torch.set_num_threads(threads)
    sft, ppo = policy(base, sft_path, threads), policy(base, ppo_path, threads)
    p = cfg.prompts
    held_out = load_prompts(p.path, sft.tokenizer, p.system_prompt, split, n_prompts, p.max_prompt_tokens)
    r = cfg.rollout
    replies = {name: sample(pol, held_out, n_samples, r.max_new_tokens, r.temperature, r.top_p, chunk)
               for name, pol in (("sft", sft), ("grpo", ppo))}
    t_gen = time.perf_counter()
    # KL(GRPO || SFT) on GRPO's own held-out samples: E[log pi_grpo - log pi_sft] (k1, summed over the reply)
    kl = seq_logprobs(ppo, held_out, replies["grpo"], n_samples, chunk) - seq_logprobs(sft, held_out, replies["grpo"], n_samples, chunk)
    del sft, ppo
    rm = load_reward_model(cfg.reward.model_path)
    turn_end = end_of_turn(rm.tokenizer)
    tok = rm.tokenizer
    scores, lengths, texts = {}, {}, {}
    for name, resp in replies.items():
        decoded = tok.batch_decode(resp, skip_special_tokens=True)
        texts[name] = decoded
        convs = [held_out[i // n_samples].text + g + turn_end for i, g in enumerate(decoded)]
        scores[name] = rm.score_texts(convs, cfg.reward.model_batch_size).numpy().reshape(len(held_out), n_samples)
        lengths[name] = float(np.mean([len(x) for x in resp]))
    per_prompt = {k: v.mean(1) for k, v in scores.items()}
    diff = mean_difference_bootstrap(per_prompt["grpo"], per_prompt["sft"], 10_000, seed=0)
    target = cfg.algo.target_kl
    kls = [h["kl"] for h in history]
    result = {
        "report": str(report), "pipeline_passed": run["passed"], "stages": run["stages"],
        "pipeline_seconds": round(sum(s["seconds"] for s in run["stages"].values()), 1),
        "sft_adapter": sft_path, "reward_model": cfg.reward.model_path, "grpo_adapter": ppo_path,
        "reward_model_eval": {k: v for k, v in (run["rm_lineage"].get("metrics") or {}).items() if k.startswith("eval")},
        "grpo": {"estimator": cfg.algo.estimator, "iterations": len(history), "prompts_per_iteration":
                 cfg.run.prompts_per_iteration, "samples_per_prompt": r.samples_per_prompt,
                 "max_new_tokens": r.max_new_tokens, "temperature": r.temperature, "lr": cfg.algo.lr,
                 "ppo_epochs": cfg.algo.ppo_epochs, "init_kl_coef": cfg.algo.init_kl_coef, "target_kl": target,
                 "min_reply_tokens": cfg.reward.min_reply_tokens, "short_reply_penalty": cfg.reward.short_reply_penalty,
                 "reference": cfg.init.reference},
        "per_iteration": [{k: h.get(k) for k in ("iteration", "rm_score", "reward_mean", "reward_std", "kl", "kl_coef",
                                                  "response_length", "truncated_frac", "empty_reply_frac",
                                                  "seconds_iteration")}
                          for h in history],
        "kl_max": max(kls) if kls else None, "kl_target": target,
        "kl_under_target_every_iteration": bool(target is None or all(k <= target for k in kls)),
        "held_out": {
            "prompts": len(held_out), "samples_per_prompt": n_samples, "split": split,
            "rm_score_before_sft": float(scores["sft"].mean()), "rm_score_after_grpo": float(scores["grpo"].mean()),
            "rm_score_difference": diff.estimate, "rm_score_difference_ci95": [diff.low, diff.high],
            "rm_score_difference_ci_method": diff.method,
            "win_rate_grpo_vs_sft": win_rate(per_prompt["grpo"], per_prompt["sft"]),
            "kl_grpo_to_sft_nats_per_reply": float(kl.mean()),
            "reply_tokens_sft": lengths["sft"], "reply_tokens_grpo": lengths["grpo"],
            "empty_reply_frac_sft": float(np.mean([not t.strip() for t in texts["sft"]])),
            "empty_reply_frac_grpo": float(np.mean([not t.strip() for t in texts["grpo"]])),
            "example": {"prompt_tail": held_out[0].text[-200:], "sft": texts["sft"][0][:200], "grpo": texts["grpo"][0][:200]},
        },
        "seconds": {"generation": round(t_gen - t0, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    return result


# ----- RLAIF ----------------------------------------------------------------------------------------------------
def human_pair_preferences(base: str, adapters: dict[str, str], pairs_artifact: Path, n_pairs: int, batch: int) -> dict:
    """Per adapter: summed and per-token log-probs of the chosen and rejected replies of the first ``n_pairs`` pairs
    of the artifact's validation split (labels = the final reply only)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from app.config.preference import PreferenceDataSpec
    from app.core.logprobs import packed_sequence_logprobs
    from app.train.pairs import load_pair_splits, n_rows, pack_pairs, select_rows

    spec = PreferenceDataSpec(artifact=str(pairs_artifact), max_eval_pairs=n_pairs)
    _, held = load_pair_splits(spec, ["chosen_labels", "rejected_labels"], seed=0)
    names = list(adapters)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapters[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(adapters[name], adapter_name=name)
    model.eval()
    out = {name: {"chosen": [], "rejected": []} for name in names}
    tokens = {"chosen": [], "rejected": []}
    n = n_rows(held)
    with torch.no_grad():
        for k in range(0, n, batch):
            rows = select_rows(held, list(range(k, min(k + batch, n))))
            b = len(rows["chosen_input_ids"])
            for side in ("chosen", "rejected"):
                tokens[side] += [sum(1 for x in lab if x != -100) for lab in rows[f"{side}_labels"]]
            for name in names:
                model.set_adapter(name)
                logps = packed_sequence_logprobs(model, pack_pairs(rows, with_labels=True)).numpy()
                out[name]["chosen"] += logps[:b].tolist()
                out[name]["rejected"] += logps[b:].tolist()
    return {"pairs": n, "tokens": {k: np.asarray(v, float) for k, v in tokens.items()},
            "logps": {m: {k: np.asarray(v) for k, v in d.items()} for m, d in out.items()}}


def accuracy(margins: np.ndarray) -> dict:
    """Fraction of pairs with margin > 0 (a tie counts half) and its Wilson interval (ties excluded)."""
    from app.core.stats import wilson_interval

    acc = float(np.mean(np.where(margins > 0, 1.0, np.where(margins == 0, 0.5, 0.0))))
    wins, decisive = int((margins > 0).sum()), int((margins != 0).sum())
    w = wilson_interval(wins, decisive) if decisive else None
    return {"accuracy_ties_half": acc, "wilson95_ties_excluded": [w.low, w.high] if w else None, "ties": int((margins == 0).sum())}


def run_rlaif(report: Path, args) -> dict:
    import ray

    from app.config.common import RaySpec
    from app.config.dpo import DPOConfig
    from app.config.loader import load_config
    from app.data.best_of_n import run_best_of_n
    from app.launch.preference import fit_preference
    from app.launch.runtime import init_ray
    from app.models.loader import resolve_model
    from app.ppo.prompts import _rows_from_artifact, expand_path

    t0 = time.perf_counter()
    run = read_run(report)
    cfg = run["cfg"]
    base = str(resolve_model(cfg.model).path)
    sft_path, rm_path = cfg.init.adapter, cfg.reward.model_path
    human = artifact_by_id(run["rm_lineage"]["dataset_id"], report)
    out_dir = report / "rlaif"
    out_dir.mkdir(exist_ok=True)
    # train-side prompts from the END of the train split (GRPO's cursor walks a shuffled order of all of them)
    rows = _rows_from_artifact(expand_path(cfg.prompts.path), "train")[-args.rlaif_prompts:]
    prompts_jsonl = out_dir / "prompts.jsonl"
    prompts_jsonl.write_text("".join(json.dumps({"messages": m}) + "\n" for m, _ in rows), encoding="utf-8")
    # the HH ingest's filters and length policy for both RLAIF artifacts, with a 10 % validation split (DPO's own
    # held-out AI-labelled pairs; the 5 % of the HH config could leave ~50 pairs with an empty one)
    import yaml

    ingest = yaml.safe_load((ROOT / "configs/ingest/smollm2_hh_preference.yaml").read_text()) | {"validation_fraction": 0.1}
    (out_dir / "ingest.yaml").write_text(yaml.safe_dump(ingest), encoding="utf-8")
    init_ray(RaySpec(address="local", num_cpus=2))
    bon = run_best_of_n(prompts_jsonl, out_dir, cfg.model.source, rm_path, out_dir / "ingest.yaml",
                        adapter=sft_path, k=args.k, max_new_tokens=cfg.rollout.max_new_tokens,
                        temperature=cfg.rollout.temperature, min_gap=args.min_gap, batch_size=4, actors=1,
                        cpus_per_actor=0.5)  # sampler + scorer + the read task must fit the 2 CPUs together
    t_pairs = time.perf_counter()
    overrides = [f"model.source={cfg.model.source}", f"data.artifact={bon.preference_artifact}", f"dpo.reference_adapter={sft_path}",
                 f"train.max_steps={args.dpo_steps}", f"train.micro_batch_size={args.dpo_batch}", "train.epochs=3",
                 f"optim.lr={args.dpo_lr}", f"dpo.beta={args.dpo_beta}", "checkpoint.every_steps=1000",
                 "train.log_every=2", "ray.address=local", "data.max_length=null",
                 f"output.dir={out_dir / 'dpo-adapter'}"]
    fit = fit_preference("dpo", load_config(ROOT / "configs/dpo/smollm2_hh_lora.yaml", DPOConfig, overrides))
    ray.shutdown()
    t_dpo = time.perf_counter()
    dpo_path = fit["output_dir"]
    lp = human_pair_preferences(base, {"sft": sft_path, "dpo": dpo_path}, human, args.human_pairs, 8)
    tok = lp["tokens"]
    sft_lp, dpo_lp = lp["logps"]["sft"], lp["logps"]["dpo"]
    implicit = (dpo_lp["chosen"] - sft_lp["chosen"]) - (dpo_lp["rejected"] - sft_lp["rejected"])

    def own(lps):  # the policy's own preference: mean log-prob per reply token, chosen vs rejected
        return lps["chosen"] / tok["chosen"] - lps["rejected"] / tok["rejected"]

    return {
        "report": str(report), "human_pairs_artifact": str(human), "sft_adapter": sft_path, "reward_model": rm_path,
        "rlaif_prompts": bon.prompts, "k": args.k, "min_gap": args.min_gap, "rlaif_pairs": bon.pairs,
        "mean_best_score": bon.mean_best_score, "mean_worst_score": bon.mean_worst_score,
        "dpo": {"steps": fit.get("step"), "micro_batch_size": args.dpo_batch, "lr": args.dpo_lr, "beta": args.dpo_beta,
                "reference": "sft adapter", "adapter": dpo_path,
                "own_split_eval": {k: v for k, v in fit["metrics"].items() if k.startswith(("eval", "eval_before"))}},
        "human_held_out": {
            "pairs": lp["pairs"],
            "implicit_reward_before": accuracy(np.zeros(lp["pairs"])),  # policy == reference: all margins 0
            "implicit_reward_after": accuracy(implicit) | {"mean_margin_nats": float(implicit.mean())},
            "loglik_preference_sft": accuracy(own(sft_lp)),
            "loglik_preference_dpo": accuracy(own(dpo_lp)),
            "reward_model_accuracy_same_source": {k: v for k, v in (run["rm_lineage"].get("metrics") or {}).items()
                                                  if k in ("eval/accuracy", "eval/pairs")},
        },
        "seconds": {"pairs": round(t_pairs - t0, 1), "dpo": round(t_dpo - t_pairs, 1),
                    "human_eval": round(time.perf_counter() - t_dpo, 1), "total": round(time.perf_counter() - t0, 1)},
    }


# ----- plot -----------------------------------------------------------------------------------------------------
RUNS = (("chain", "-", "run 2 (lr 5e-4, beta 0.2, short-reply guard)"), ("chain_run1_collapsed", ":", "run 1 (lr 1.5e-3, beta 0.05)"))


def plot(result: dict, path: Path) -> None:
    """Per GRPO iteration: RM score, KL (with its target) and reply length, one line per stored run; and the held-out
    RM score of SFT vs GRPO with the win rate, per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(result[k], style, label) for k, style, label in RUNS if k in result]
    if not runs:
        return
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.0))
    for chain, style, label in runs:
        it = [h["iteration"] for h in chain["per_iteration"]]
        for ax, key, color in zip(axes[:3], ("rm_score", "kl", "response_length"), ("tab:blue", "tab:red", "tab:green")):
            ax.plot(it, [h[key] for h in chain["per_iteration"]], style, marker="o", color=color, label=label)
    if runs[0][0].get("kl_target") is not None:
        axes[1].axhline(runs[0][0]["kl_target"], ls="--", color="grey", label=f"target {runs[0][0]['kl_target']}")
    for ax, title in zip(axes[:3], ("RM score of the GRPO samples (train prompts)", "KL(pi || SFT reference), nats/reply",
                                    "reply length (tokens)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("GRPO iteration")
        ax.legend(fontsize=7)
    ax = axes[3]
    names, values, notes = [], [], []
    for chain, _, label in runs:
        h = chain["held_out"]
        wr = h["win_rate_grpo_vs_sft"]
        lo, hi = wr["ci95_ties_half"]
        names += [f"SFT\n{label.split(' (')[0]}", f"GRPO\n{label.split(' (')[0]}"]
        values += [h["rm_score_before_sft"], h["rm_score_after_grpo"]]
        notes.append(f"{label.split(' (')[0]}: win {wr['win_rate_ties_half']:.2f} "
                     f"[{lo:.2f}, {hi:.2f}], n={h['prompts']}")
    bars = ax.bar(range(len(values)), values, color=["tab:grey", "tab:blue"] * len(runs))
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(values)), names, fontsize=8)
    ax.set_title("held-out RM score; GRPO vs SFT win rate [95%]\n" + "\n".join(notes), fontsize=8)
    fig.suptitle("SmolLM2-135M, HH-RLHF harmless: SFT -> reward model -> GRPO (configs/pipeline/rlhf.yaml), 2 CPU cores",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", help="the pipeline's report folder (holds ppo/, reward-model/, report.md)")
    ap.add_argument("--prompts", type=int, default=64, help="held-out prompts for the before/after and win rate")
    ap.add_argument("--samples", type=int, default=2, help="replies per held-out prompt and policy")
    ap.add_argument("--split", default="validation", help="prompt artifact split the held-out prompts come from")
    ap.add_argument("--chunk", type=int, default=8, help="prompts per generate call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rlaif", action="store_true", help="RLAIF -> DPO -> human held-out pairs instead of the chain")
    ap.add_argument("--rlaif-prompts", type=int, default=48)
    ap.add_argument("--k", type=int, default=4, help="RLAIF: replies per prompt")
    ap.add_argument("--min-gap", type=float, default=0.2, help="RLAIF: smallest best-worst RM score gap kept as a pair")
    ap.add_argument("--dpo-steps", type=int, default=16)
    ap.add_argument("--dpo-batch", type=int, default=4)
    ap.add_argument("--dpo-lr", type=float, default=5e-4)
    ap.add_argument("--dpo-beta", type=float, default=0.1)
    ap.add_argument("--human-pairs", type=int, default=128, help="RLAIF: human held-out pairs scored")
    ap.add_argument("--out", default=str(OUT), help="results JSON (the PNG goes beside it)")
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.is_file() else {}
    if not args.plot_only:
        if not args.report:
            ap.error("--report is required (the pipeline's report folder)")
        report = Path(args.report).resolve()
        if args.rlaif:
            result["rlaif"] = run_rlaif(report, args)
        else:
            result["chain"] = evaluate_chain(report, args.prompts, args.samples, args.chunk, args.threads, args.split)
        print(json.dumps(result["rlaif" if args.rlaif else "chain"], indent=1, default=str)[:6000], flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    plot(result, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
