"""Ray Train overhead: bare PyTorch loop vs rayalign's loop on Ray Train (1 worker x 2 CPUs), same everything.

Same model (MODEL: a ~3.3M-parameter Llama, full fine-tuning), same packed rows, same batch, same core loss, same
AdamW, same threads (2). Steady state is tokens/s over the steps after the first WARMUP (15): all their tokens over
the wall time they took, stalls between steps included (``tokens_per_s``; the median step's rate is next to it); 300
steady steps for SFT and 110 for DPO, ~30 s a segment on both sides. Ray's start-up (cluster, worker group, model
load, data) is reported separately.

    python benchmarks/train_overhead.py [--method sft|dpo] [--runs 3] [--no-diagnostics] [--clusters lean default]
    python benchmarks/train_overhead.py --idle 15     # what an idle local cluster's processes burn, default vs lean
    # writes benchmarks/results/train_overhead.json

The machine's speed drifts more between segments than the 10 % this is held to; the headline figure therefore comes
from ``train_overhead_alternating.py``, which runs these same loops in 10-s turns. This script keeps the segment
design, the thread, process and machine probes, and ``--idle``.

Each run is a fresh Python process that interleaves the two sides: the bare loop with no Ray process on the machine,
the Ray Train loop, then (after the cluster has shut down and its processes are gone) the bare loop again. A Ray row's
baseline is the mean of the bare segments right before and after it (``steady_state_overhead``), so a drift of this
shared box hits both sides alike; ``steady_state_overhead_vs_faster_bare`` holds it against the faster of the two,
and ``bare_spread`` (the two bare segments' difference over their mean) is the run's noise floor. Every segment has
``machine``: the VM's steal fraction and busy cores (/proc/stat), ``foreign_cores`` (busy cores this benchmark's
processes did not use: other users of the shared machine), and the threads of the training process by (name,
niceness), on a CPU and runnable-but-waiting (schedstat).
Each loop also records its in-step rate: ``compute_only_overhead`` near the headline means the steps themselves ran
slower (CPU contention), far below it means time was lost between the steps. SFT first runs the bare loop in a plain
thread (``bare_pytorch_in_thread``), as Ray Train V2 runs the train function, before any other loop: a thread that
starts its OpenMP team while the main thread has one of its own runs ~25 % slower (libgomp shortens its spin-wait
when it manages more threads than CPUs), which a thread started after the main-thread loop would measure instead.

What is compared: the Ray *Train* harness (worker group, the loop in a thread, reports, checkpoint bookkeeping),
on the local cluster a single-node user starts with ``ray.lean: true`` (``app/launch/runtime.py``: no dashboard,
no metrics export, no event stats, no usage stats) -- the headline. The same loop on the default local cluster
(dashboard and metrics agent running) is the second row, ``..._default_cluster``, when ``--clusters`` names it.
While each Ray loop runs, every process the driver started is sampled (``psutil`` CPU times, 1 s) and its CPU
over the steady-state steps is reported by kind (raylet, gcs_server, dashboard, the train worker, ...).
``--idle SECONDS`` samples the same processes of an idle cluster, default and lean.

``--method dpo``: the same comparison for the DPO loop (app/train/dpo.py: packed policy log-probs, precomputed
reference columns, the core DPO loss) on synthetic pairs, 16 pairs per step; the reference precompute runs on Ray
first, and that cluster is shut down before the first bare segment.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Ray starts workers at niceness 15 by default; a benchmark must not hand the bare baseline a priority edge.
os.environ.setdefault("RAY_worker_niceness", "0")

from app.config.sft import SFTConfig  # noqa: E402
from app.core.losses import causal_lm_loss  # noqa: E402
from app.models.lora import load_trainable_model  # noqa: E402
from app.models.tiny import build_tiny_model  # noqa: E402
from app.train.batches import PackedShard, collate_packed, shard_rows  # noqa: E402
from app.train.strategy import make_strategy  # noqa: E402
from app.data.synthetic import write_packed_artifact  # noqa: E402
from train_overhead_probes import MachineSample, ProcessCPU  # noqa: E402 (benchmarks/ is the script's folder)

# ~0.1 s an SFT step, ~0.28 s a DPO step: 300 / 110 steady steps, ~30 s a segment on each side (session 9's 70
# steps, ~7-20 s, let one scheduler stall of this shared 2-core VM move a segment by 18 %)
STEPS_BY_METHOD, WARMUP, SEQ = {"sft": 315, "dpo": 125}, 15, 512
STEPS = STEPS_BY_METHOD["sft"]
MODEL = dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4)


def config(artifact: Path, model_dir: Path, storage: Path, lean: bool = True, steps: int | None = None) -> SFTConfig:
    return SFTConfig.model_validate({
        "model": {"source": str(model_dir)},
        "data": {"artifact": str(artifact)},
        "method": "full",
        "optim": {"lr": 1e-4, "schedule": "constant"},
        "train": {"max_steps": steps or STEPS, "epochs": 1000, "micro_batch_size": 1, "grad_accum": 1, "log_every": 10},
        "checkpoint": {"every_steps": 10**6, "keep": 1},
        "scaling": {"num_workers": 1, "cpus_per_worker": 2, "max_failures": 0},
        "tracking": {"enabled": False},
        "ray": {"storage_path": str(storage), "run_name": f"overhead-{'lean' if lean else 'default'}-{int(time.time())}",
                "num_cpus": 2, "lean": lean},
    })


def bare_loop(cfg: SFTConfig, artifact: Path, model_dir: Path, side=None) -> dict:
    """``side`` (train_overhead_alternating.py): loop until ``side.should_stop(step, starts, tokens)``, then return
    ``side.finish(starts, tokens)`` (the raw step times) instead of the steady-state summary."""
    import pyarrow.parquet as pq

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = load_trainable_model(model_dir, cfg.method, cfg.lora, cfg.quant)
    rows, total = shard_rows(pq.read_table(artifact / "train").to_pylist(), 0, 1)
    shard = PackedShard(rows, total, 1, 1, 1, cfg.train.seed)
    strat = make_strategy(model, cfg, STEPS)
    starts, tokens, compute = [], [], []
    for step in range(10**9 if side else STEPS):
        if side and side.should_stop(step, starts, tokens):
            return side.finish(starts, tokens)
        if step == WARMUP:
            machine = MachineSample()
        starts.append(time.time())
        t0 = time.perf_counter()
        batch = collate_packed(shard.step_rows(0, step % shard.steps_per_epoch)[0], 0)
        logits = strat.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        loss_sum, n = causal_lm_loss(logits, batch["labels"], batch["position_ids"])
        strat.backward(loss_sum / n, last=True)
        loss_sum.item()
        strat.step()
        tokens.append(int(batch["n_real_tokens"]))
        compute.append(tokens[-1] / (time.perf_counter() - t0))
    starts.append(time.time())
    return {**steady_state(starts, tokens, compute), "machine": machine.since()}


def steady_state(starts: list[float], tokens: list[int], compute: list[float]) -> dict:
    """tokens/s over the steady span (the headline): the tokens of the steps after WARMUP over the wall time from the
    first such step's start to the last one's end, so a stall between steps counts (a report that waits for Ray Train's
    controller did: ~1 s every 10 steps). Next to it: the median step's rate (robust to one slow step, blind to a
    stall that recurs every few steps), and ``compute``: each step's tokens/s over batch + forward + backward +
    optimizer step only (what the Ray loop logs as ``tokens_per_s``), its median."""
    import statistics

    span = starts[-1] - starts[WARMUP]
    durations = [b - a for a, b in zip(starts[WARMUP:], starts[WARMUP + 1:])]
    rates = sorted(t / d for t, d in zip(tokens[WARMUP:], durations))
    return {"tokens_per_s": sum(tokens[WARMUP:len(durations) + WARMUP]) / span, "tokens_per_s_median_step": statistics.median(rates),
            "compute_tokens_per_s": statistics.median(compute[WARMUP:WARMUP + len(durations)]),
            "seconds_per_step": statistics.median(durations), "steady_steps": len(durations)}


def ray_loop(cfg: SFTConfig) -> dict:
    from app.launch.run import run_sft

    t0 = time.time()
    with ProcessCPU() as cpu:
        out = run_sft(cfg)
    end = time.time()
    hist = out.history
    starts = [h["wall_start"] for h in hist] + [end]
    # the last step also writes the final checkpoint + adapter; measure steady state over the steps before it
    res = steady_state(starts[:-1], [int(h["tokens"]) for h in hist][:-1], [h["tokens_per_s"] for h in hist])
    res["startup_s"] = hist[0]["wall_start"] - t0
    res["total_s"] = end - t0
    res["process_cpu"] = cpu.window(hist[WARMUP]["wall_start"], hist[-1]["wall_start"])
    return res


def idle_cluster_cpu(seconds: float) -> dict:
    """CPU of an idle local cluster's processes over ``seconds`` (after a 4 s settle), default and lean."""
    import ray

    from app.config.common import RaySpec
    from app.launch.runtime import init_ray

    out = {}
    for name, lean in (("default", False), ("lean", True)):
        init_ray(RaySpec(num_cpus=2, lean=lean))
        time.sleep(4)
        with ProcessCPU() as cpu:
            t0 = time.time()
            time.sleep(seconds)
            t1 = time.time()
        out[name] = cpu.window(t0, t1)
        ray.shutdown()
        time.sleep(2)
    return {"seconds": seconds, **out}


PAIRS_PER_STEP = 16


def dpo_config(artifact: Path, model_dir: Path, storage: Path, lean: bool = True, steps: int | None = None):
    from app.config.dpo import DPOConfig

    return DPOConfig.model_validate({
        "model": {"source": str(model_dir)}, "data": {"artifact": str(artifact), "eval_fraction": 0.0},
        "method": "full", "optim": {"lr": 1e-4, "schedule": "constant"},
        "train": {"max_steps": steps or STEPS_BY_METHOD["dpo"], "epochs": 1000, "micro_batch_size": PAIRS_PER_STEP, "log_every": 10},
        "checkpoint": {"every_steps": 10**6, "keep": 1},
        "scaling": {"num_workers": 1, "cpus_per_worker": 2, "max_failures": 0},
        "dpo": {"precompute_cpus": 2}, "tracking": {"enabled": False},
        "ray": {"storage_path": str(storage), "run_name": f"overhead-dpo-{'lean' if lean else 'default'}-{int(time.time())}",
                "num_cpus": 2, "lean": lean},
    })


def bare_dpo_loop(cfg, artifact: Path, model_dir: Path, side=None) -> dict:
    from app.data.reference_logprobs import COLUMNS
    from app.train.dpo import PolicyLogprobs, preference_objective
    from app.train.pairs import PairShard, load_pair_splits, pack_pairs, pair_tokens

    torch.set_num_threads(2)
    torch.manual_seed(0)
    train, _ = load_pair_splits(cfg.data, list(COLUMNS), cfg.train.seed)
    shard = PairShard(train, 0, 1, PAIRS_PER_STEP, 1, cfg.train.seed)
    steps = STEPS_BY_METHOD["dpo"]
    strat = make_strategy(PolicyLogprobs(load_trainable_model(model_dir, cfg.method, cfg.lora, cfg.quant)), cfg, steps)
    starts, tokens, compute = [], [], []
    for step in range(10**9 if side else steps):
        if side and side.should_stop(step, starts, tokens):
            return side.finish(starts, tokens)
        if step == WARMUP:
            machine = MachineSample()
        starts.append(time.time())
        t0 = time.perf_counter()
        rows = shard.step_rows(step // shard.steps_per_epoch, step % shard.steps_per_epoch)[0]
        loss, _, _ = preference_objective(strat.model(pack_pairs(rows, with_labels=True)), rows, cfg.dpo)
        strat.backward(loss, last=True)
        loss.item()
        strat.step()
        tokens.append(pair_tokens(rows))
        compute.append(tokens[-1] / (time.perf_counter() - t0))
    starts.append(time.time())
    return {**steady_state(starts, tokens, compute), "machine": machine.since()}


def ray_dpo_loop(cfg) -> dict:
    from app.launch.preference import fit_preference

    t0 = time.time()
    with ProcessCPU() as cpu:
        out = fit_preference("dpo", cfg)
    end = time.time()
    hist = out["history"]
    res = steady_state([h["wall_start"] for h in hist], [int(h["tokens"]) for h in hist][:-1], [h["tokens_per_s"] for h in hist])
    res["startup_s"] = hist[0]["wall_start"] - t0
    res["total_s"] = end - t0
    res["process_cpu"] = cpu.window(hist[WARMUP]["wall_start"], hist[-1]["wall_start"])
    return res


def measure_dpo(work: Path, clusters: tuple[str, ...] = ("lean",)) -> dict:
    from app.launch.preference import ensure_reference_logprobs
    from app.launch.runtime import init_ray
    from app.models.loader import load_tokenizer

    model_dir = build_tiny_model(work / "model", **MODEL)
    from app.data.synthetic import write_preference_artifact

    artifact = write_preference_artifact(work / "pairs", load_tokenizer(str(model_dir)), PAIRS_PER_STEP * 8, 0, model_source=str(model_dir))
    cfgs = {c: dpo_config(artifact, model_dir, work / f"runs-{c}", lean=c == "lean") for c in clusters}
    first = cfgs[clusters[0]]
    init_ray(first.ray)
    ensure_reference_logprobs(first)  # once, outside both timings
    stop_ray()  # the bare loop runs with no Ray processes on the machine, as SFT's does
    bare = [bare_dpo_loop(first, artifact, model_dir)]
    rows = {}
    for c in clusters:
        rows[c] = ray_dpo_loop(cfgs[c])
        stop_ray()
        bare.append(bare_dpo_loop(first, artifact, model_dir))
    return {"pairs_per_step": PAIRS_PER_STEP, **interleaved(bare, rows)}


def interleaved(bare: list[dict], rows: dict[str, dict]) -> dict:
    """The Ray rows against the bare segments around them: Ray row i ran between bare segments i and i + 1, so its
    baseline is their mean (``steady_state_overhead``; the first cluster's row is the headline). The stricter figure
    against the faster of the two is ``steady_state_overhead_vs_faster_bare``."""
    rates = [b["tokens_per_s"] for b in bare]
    out: dict = {"bare_pytorch": bare[0], "bare_pytorch_segments": bare, "headline_cluster": next(iter(rows)),
                 "bare_spread": (max(rates) - min(rates)) / (sum(rates) / len(rates))}  # the noise floor of this run
    for i, (cluster, res) in enumerate(rows.items()):
        tail = "" if i == 0 else f"_{cluster}_cluster"
        around = bare[i], bare[i + 1]
        base = sum(b["tokens_per_s"] for b in around) / 2
        if i == 0:
            out["baseline_tokens_per_s"] = base
        out[f"ray_train_1x2cpu{tail}"] = res
        out[f"steady_state_overhead{tail}"] = 1.0 - res["tokens_per_s"] / base
        out[f"steady_state_overhead_vs_faster_bare{tail}"] = 1.0 - res["tokens_per_s"] / max(b["tokens_per_s"] for b in around)
        out[f"compute_only_overhead{tail}"] = 1.0 - res["compute_tokens_per_s"] / (sum(b["compute_tokens_per_s"] for b in around) / 2)
    return out


def stop_ray(timeout_s: float = 20.0) -> None:
    """Shut the local cluster down and wait until none of its processes is left, so the next bare segment runs
    with no Ray process on the machine."""
    import psutil
    import ray

    def alive(proc) -> bool:
        try:
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    ray.shutdown()
    deadline = time.time() + timeout_s
    while time.time() < deadline and any(alive(p) for p in psutil.Process().children(recursive=True)):
        time.sleep(0.5)
    time.sleep(1.0)


def in_thread(fn, *args) -> dict:
    """``fn(*args)`` in a non-main thread, as Ray Train V2 runs a worker's train function (own malloc arena, own
    OpenMP team): separates a thread effect from Ray's own work."""
    import threading

    out: dict = {}
    t = threading.Thread(target=lambda: out.update(fn(*args)))
    t.start()
    t.join()
    return out


def one_run(method: str, no_diagnostics: bool = False, clusters: tuple[str, ...] = ("lean", "default")) -> dict:
    """One comparison in a fresh process: ``python train_overhead.py --one METHOD`` prints its result as the last line."""
    import subprocess
    import sys

    flags = (["--no-diagnostics"] if no_diagnostics else []) + ["--clusters", *clusters]
    proc = subprocess.run([sys.executable, __file__, "--one", method, *flags], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"train_overhead run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import argparse
    import subprocess
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["sft", "dpo"], default="sft")
    ap.add_argument("--runs", type=int, default=1, help="repeat the comparison (the goal is <= 10%% in every run)")
    ap.add_argument("--no-diagnostics", action="store_true", help="SFT: skip the bare loop in a plain thread")
    ap.add_argument("--clusters", nargs="+", choices=["lean", "default"], default=["lean", "default"],
                    help="local clusters the Ray loop runs on, in order; the first is the headline")
    ap.add_argument("--idle", type=float, metavar="SECONDS", help="only sample an idle cluster's processes, default and lean")
    ap.add_argument("--one", choices=["sft", "dpo", "idle"], help=argparse.SUPPRESS)  # internal: one run in this process
    args = ap.parse_args()
    clusters = tuple(args.clusters)
    if args.one:
        if args.one == "idle":
            res = idle_cluster_cpu(args.idle)
        elif args.one == "dpo":
            res = measure_dpo(Path(tempfile.mkdtemp(prefix="rayalign-overhead-dpo-")), clusters)
        else:
            res = measure_sft(clusters, diagnostics=not args.no_diagnostics)
        print(json.dumps(res), flush=True)
        return
    out = ROOT / "benchmarks" / "results" / "train_overhead.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    if args.idle:
        proc = subprocess.run([sys.executable, __file__, "--one", "idle", "--idle", str(args.idle)], capture_output=True,
                              text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"idle sample failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(res, indent=1), flush=True)
        out.write_text(json.dumps({**previous, "idle_cluster_cpu": res}, indent=2))
        return
    key = "dpo_runs" if args.method == "dpo" else "sft_runs"
    if previous.get(key) and "bare_pytorch_segments" not in previous[key][0]:  # session 8's: one bare loop before Ray
        previous[f"{key}_session8_not_interleaved"] = previous.pop(key)
    if previous.get(key) and "bare_spread" not in previous[key][0]:  # session 9's: 70 steady steps a segment
        previous[f"{key}_session9_70_steps"] = previous.pop(key)
    legacy = ("model_params", "seq_len", "steps", "warmup_steps", "threads", "bare_pytorch", "ray_train_1x2cpu",
              "steady_state_overhead", "compute_only_overhead")
    if "bare_pytorch" in previous:  # session 7 hold 2's last SFT run, also written at the top level (old layout)
        previous["sft_last_run_session7"] = {k: previous.pop(k) for k in legacy if k in previous}
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(args.runs):
        r = one_run(args.method, args.no_diagnostics, clusters)
        runs.append(r)
        out.write_text(json.dumps({**previous, key: runs, "one_process_per_run": True}, indent=2))  # after every run
        rows = " | ".join(
            f"{c}: {r['ray_train_1x2cpu' + t]['tokens_per_s']:.0f} tok/s, overhead {r['steady_state_overhead' + t] * 100:.1f}% "
            f"(vs the faster bare {r['steady_state_overhead_vs_faster_bare' + t] * 100:.1f}%), "
            f"other processes {r['ray_train_1x2cpu' + t]['process_cpu']['cores_not_training']:.2f} cores"
            for j, c in enumerate(clusters) for t in ["" if j == 0 else f"_{c}_cluster"])
        bare = " / ".join(f"{b['tokens_per_s']:.0f}" for b in r["bare_pytorch_segments"])
        steal = max(x["machine"]["steal_fraction"] for x in [*r["bare_pytorch_segments"], r["ray_train_1x2cpu"]["process_cpu"]])
        print(f"{args.method} run {i + 1}/{args.runs}: bare {bare} tok/s (spread {r['bare_spread'] * 100:.1f}%, "
              f"steal <= {steal * 100:.2f}%) | {rows}", flush=True)


def measure_sft(clusters: tuple[str, ...] = ("lean", "default"), diagnostics: bool = True) -> dict:
    """One SFT comparison in this (fresh) process, bare and Ray segments interleaved: bare, Ray on each cluster, bare
    again after each (with no Ray process left), so a drift of the shared machine hits both sides alike."""
    work = Path(tempfile.mkdtemp(prefix="rayalign-overhead-"))
    artifact = write_packed_artifact(work / "artifact", n_rows=STEPS + 5, max_length=SEQ, vocab=500)
    model_dir = build_tiny_model(work / "model", **MODEL)
    cfgs = {c: config(artifact, model_dir, work / f"runs-{c}", lean=c == "lean") for c in clusters}
    first = cfgs[clusters[0]]
    n_params = sum(p.numel() for p in load_trainable_model(model_dir, "full", first.lora, first.quant).parameters())
    out: dict = {"model_params": n_params, "seq_len": SEQ, "steps": STEPS, "warmup_steps": WARMUP, "threads": 2}
    if diagnostics:  # Ray Train runs the loop in a thread; first, while no other thread has an OpenMP team
        threaded = in_thread(bare_loop, first, artifact, model_dir)
    bare = [bare_loop(first, artifact, model_dir)]
    rows = {}
    for c in clusters:
        rows[c] = ray_loop(cfgs[c])
        stop_ray()
        bare.append(bare_loop(first, artifact, model_dir))
    out.update(interleaved(bare, rows))
    if diagnostics:
        out.update(bare_pytorch_in_thread=threaded, in_thread_slowdown_of_bare=1.0 - threaded["tokens_per_s"] / out["baseline_tokens_per_s"])
    return out


if __name__ == "__main__":
    main()
