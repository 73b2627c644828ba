"""Ray Train overhead, measured in alternating chunks: the bare loop and the Ray Train loop take turns on the machine.

``benchmarks/train_overhead.py`` runs the bare loop, then Ray Train, then the bare loop again, ~30 s each. On this
shared 2-core VM the same bare loop's speed wanders within seconds, and its 30-s segments a few minutes apart differ
by more than the 10 % the overhead is held to (``bare_spread`` of that script's runs). So this script lets both
sides run at once, as two process trees that take turns: while one runs, every process of the other is stopped
(SIGSTOP; a stopped process takes no CPU). One run:

1. (DPO: the reference log-probs are precomputed on Ray in a process of their own, which ends with its cluster)
   the bare loop (``train_overhead.bare_loop``, a process of its own) warms up, then stops;
2. the Ray side (``run_sft`` / ``fit_preference`` on a lean local cluster: driver, gcs_server, raylet, Ray Train's
   controller and worker, ...) starts with the bare one stopped, and warms up until its train worker uses ≥ 1.6
   cores for 4 s;
3. ``--pairs`` times: a bare chunk, then a Ray chunk (``--chunk-s`` seconds each; a final bare chunk closes), so a
   linear drift of the machine's speed hits both sides alike.

A side's rate in a chunk is the tokens of the steps that started and ended inside it over their wall time (stalls
between steps, e.g. a report waiting for the controller, count; the step a stop cut in two does not). The headline
``overhead`` is 1 - Ray tokens/s ÷ bare tokens/s over all chunks; ``pair_overheads`` holds each Ray chunk against the
mean of the bare chunks on either side, ``pair_overhead_ci95`` is their mean's 95 % interval, and ``bare_split``
compares the odd and even bare chunks (the same loop against itself: this run's noise floor).

    python benchmarks/train_overhead_alternating.py [--method sft|dpo] [--runs 3] [--pairs 12] [--chunk-s 10]
    # writes benchmarks/results/train_overhead.json, keys sft_alternating_runs / dpo_alternating_runs

What the chunks leave out: Ray's start-up (reported separately, ``ray_startup_s``), and what a process does in the
first instants after it is continued (both sides are continued the same number of times). Everything both sides
share is in ``train_overhead.py``: model, rows, batch, loss, optimizer, threads (2), Ray workers at niceness 0.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import train_overhead as base  # benchmarks/ is the script's folder
from train_overhead_probes import machine_window, proc_stat, process_kind

SFT_ROWS = 3000  # rows of the SFT artifact: more than the Ray side's steps, so both sides see the rows in one order
WARMUP_S = 5.0  # a side's steady steps before it is first stopped
RAY_STEADY_CORES, RAY_STEADY_S = 1.6, 4.0


class BareSide:
    """What the bare loop does between steps in this benchmark: says it warmed up (a file), stops at another file,
    and writes its raw step times."""

    def __init__(self, work: Path):
        self.work = work

    def should_stop(self, step: int, starts: list[float], tokens: list[int]) -> bool:
        if step > base.WARMUP and not (self.work / "bare.ready").exists() and starts[-1] - starts[base.WARMUP] >= WARMUP_S:
            span = starts[-1] - starts[base.WARMUP]
            (self.work / "bare.ready").write_text(json.dumps({"seconds_per_step": span / (len(starts) - 1 - base.WARMUP)}))
        return (self.work / "bare.stop").exists()

    def finish(self, starts: list[float], tokens: list[int]) -> dict:
        starts = [*starts, time.time()]
        (self.work / "bare.json").write_text(json.dumps({"starts": starts, "tokens": tokens}))
        return {}


def setup(work: Path, method: str, steps: int):
    """Model, data and the lean-cluster config of ``method`` under ``work`` (built once per run, by the bare side)."""
    from app.models.loader import load_tokenizer

    model_dir = work / "model"
    if method == "sft":
        artifact = work / "artifact"
        if not model_dir.exists():
            base.write_packed_artifact(artifact, n_rows=SFT_ROWS, max_length=base.SEQ, vocab=500)
            base.build_tiny_model(model_dir, **base.MODEL)
        return base.config(artifact, model_dir, work / "runs", lean=True, steps=steps), artifact, model_dir
    artifact = work / "pairs"
    if not model_dir.exists():
        from app.data.synthetic import write_preference_artifact

        base.build_tiny_model(model_dir, **base.MODEL)
        write_preference_artifact(artifact, load_tokenizer(str(model_dir)), base.PAIRS_PER_STEP * 8, 0, model_source=str(model_dir))
    return base.dpo_config(artifact, model_dir, work / "runs", lean=True, steps=steps), artifact, model_dir


def run_side(side: str, method: str, work: Path, steps: int) -> None:
    """The body of a side's process: ``bare`` loops until told to stop; ``ray`` trains ``steps`` steps on Ray Train."""
    cfg, artifact, model_dir = setup(work, method, steps)
    if side == "prepare":  # DPO: the reference log-prob columns both sides read, on Ray, before either side starts
        from app.launch.preference import ensure_reference_logprobs
        from app.launch.runtime import init_ray

        init_ray(cfg.ray)
        ensure_reference_logprobs(cfg)
        return
    if side == "bare":
        (base.bare_loop if method == "sft" else base.bare_dpo_loop)(cfg, artifact, model_dir, side=BareSide(work))
        return
    if method == "sft":
        from app.launch.run import run_sft

        hist = run_sft(cfg).history
    else:  # the reference columns are there already ("prepare")
        from app.launch.preference import fit_preference

        hist = fit_preference("dpo", cfg)["history"]
    (work / "ray.json").write_text(json.dumps({"starts": [h["wall_start"] for h in hist], "tokens": [int(h["tokens"]) for h in hist]}))


class Tree:
    """A child process and everything it starts (Ray's daemons and workers), stopped and continued as one."""

    def __init__(self, proc: subprocess.Popen):
        import psutil

        self.proc, self.root = proc, psutil.Process(proc.pid)

    def members(self):
        import psutil

        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def signal(self, sig: int) -> None:
        import psutil

        for p in self.members():
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass

    def train_worker_cpu(self) -> float:
        import psutil

        total = 0.0
        for p in self.members():
            try:
                if " ".join(p.cmdline()).startswith("ray::RayTrainWorker"):
                    t = p.cpu_times()
                    total += t.user + t.system
            except psutil.Error:
                pass
        return total


def spawn(side: str, method: str, work: Path, steps: int, log: Path) -> Tree:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(base.ROOT), os.environ.get("PYTHONPATH", "")])}
    fh = open(log, "w")
    proc = subprocess.Popen([sys.executable, __file__, "--side", side, "--method", method, "--work", str(work), "--steps", str(steps)],
                            stdout=fh, stderr=subprocess.STDOUT, cwd=base.ROOT, env=env)
    return Tree(proc)


def wait_for(cond, what: str, tree: Tree, log: Path, timeout_s: float = 600.0) -> None:
    deadline = time.time() + timeout_s
    while not cond():
        if tree.proc.poll() is not None:
            raise SystemExit(f"{what}: the process exited ({tree.proc.returncode}):\n{log.read_text()[-3000:]}")
        if time.time() > deadline:
            raise SystemExit(f"{what}: not within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def ray_steady(tree: Tree) -> Callable[[], bool]:
    """A condition: the Ray side's train worker has used ≥ RAY_STEADY_CORES for the last RAY_STEADY_S seconds."""
    samples: list[tuple[float, float]] = []

    def cond() -> bool:
        samples.append((time.time(), tree.train_worker_cpu()))
        old = [s for s in samples if s[0] <= samples[-1][0] - RAY_STEADY_S]
        if not old or samples[-1][1] == 0.0:
            return False
        (t0, c0), (t1, c1) = old[-1], samples[-1]
        return (c1 - c0) / (t1 - t0) >= RAY_STEADY_CORES

    return cond


def chunk_rate(starts: list[float], tokens: list[int], a: float, b: float) -> tuple[int, float, int]:
    """(tokens, seconds, steps) of the steps that started at or after ``a`` and ended (the next step's start) by ``b``."""
    tok = secs = n = 0
    for i in range(len(tokens)):
        if i + 1 < len(starts) and starts[i] >= a and starts[i + 1] <= b:
            tok, secs, n = tok + tokens[i], secs + starts[i + 1] - starts[i], n + 1
    return tok, secs, n


def one_run(method: str, pairs: int, chunk_s: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"rayalign-overhead-alt-{method}-"))
    if method == "dpo":
        prep = spawn("prepare", method, work, 0, work / "prepare.log")
        if prep.proc.wait() != 0:
            raise SystemExit(f"DPO reference precompute failed:\n{(work / 'prepare.log').read_text()[-3000:]}")
    bare = spawn("bare", method, work, 0, work / "bare.log")
    wait_for(lambda: (work / "bare.ready").exists(), "bare side warm-up", bare, work / "bare.log")
    per_step = json.loads((work / "bare.ready").read_text())["seconds_per_step"]
    bare.signal(signal.SIGSTOP)
    # enough steps for the schedule with 40 s to spare (the Ray side then runs on alone to its end)
    steps = base.WARMUP + int((RAY_STEADY_S + WARMUP_S + pairs * chunk_s + 40) / per_step)
    if method == "sft" and steps > SFT_ROWS:
        raise SystemExit(f"{pairs} pairs of {chunk_s} s need {steps} steps, more than the artifact's {SFT_ROWS} rows")
    t_ray = time.time()
    ray = spawn("ray", method, work, steps, work / "ray.log")
    wait_for(ray_steady(ray), "Ray side warm-up", ray, work / "ray.log")
    ray_startup_s = time.time() - t_ray
    ray_processes = sorted(process_kind(p) for p in ray.members())  # what each Ray chunk's end stops
    time.sleep(WARMUP_S)
    chunks: list[dict] = []

    def turn(side: str, run: Tree, rest: Tree) -> None:
        rest.signal(signal.SIGSTOP)
        run.signal(signal.SIGCONT)
        stat0, a = proc_stat(), time.time()
        time.sleep(chunk_s)
        stat1, b = proc_stat(), time.time()
        machine = machine_window(stat0, stat1, {}, {}, b - a, 0.0)
        chunks.append({"side": side, "a": a, "b": b, "steal_fraction": machine["steal_fraction"], "busy_cores": machine["busy_cores"]})

    for _ in range(pairs):
        turn("bare", bare, ray)
        if ray.proc.poll() is not None:
            break
        turn("ray", ray, bare)
    turn("bare", bare, ray)
    (work / "bare.stop").write_text("")
    bare.signal(signal.SIGCONT)
    ray.signal(signal.SIGCONT)
    for tree, log in ((bare, work / "bare.log"), (ray, work / "ray.log")):
        if tree.proc.wait(timeout=900) != 0:
            raise SystemExit(f"a side failed (exit {tree.proc.returncode}):\n{log.read_text()[-3000:]}")
    return summarise(json.loads((work / "bare.json").read_text()), json.loads((work / "ray.json").read_text()), chunks,
                     {"method": method, "pairs": pairs, "chunk_s": chunk_s, "ray_max_steps": steps, "ray_startup_s": round(ray_startup_s, 1),
                      "ray_processes_stopped": ray_processes})


def summarise(bare: dict, ray: dict, chunks: list[dict], meta: dict) -> dict:
    # the Ray side's last step writes the final checkpoint and adapter: leave it out, as train_overhead.py does
    ray_starts, ray_tokens = ray["starts"], ray["tokens"][:-1]
    for c in chunks:
        starts, tokens = (bare["starts"], bare["tokens"]) if c["side"] == "bare" else (ray_starts, ray_tokens)
        tok, secs, n = chunk_rate(starts, tokens, c["a"], c["b"])
        c.update(tokens=tok, seconds=round(secs, 3), steps=n, tokens_per_s=round(tok / secs, 1) if secs else None)
    chunks = [c for c in chunks if c["steps"]]  # a Ray chunk after the Ray side's end has none
    while chunks and chunks[-1]["side"] == "ray":  # keep bare chunks on both ends
        chunks.pop()

    def pooled(cs) -> float:
        return sum(c["tokens"] for c in cs) / sum(c["seconds"] for c in cs)

    bares, rays = [c for c in chunks if c["side"] == "bare"], [c for c in chunks if c["side"] == "ray"]
    pair = []
    for i, c in enumerate(chunks):
        if c["side"] == "ray" and 0 < i < len(chunks) - 1:
            pair.append(1.0 - c["tokens_per_s"] / ((chunks[i - 1]["tokens_per_s"] + chunks[i + 1]["tokens_per_s"]) / 2))
    half = 1.96 * statistics.stdev(pair) / math.sqrt(len(pair)) if len(pair) > 1 else None
    even, odd = pooled(bares[0::2]), pooled(bares[1::2]) if len(bares) > 1 else float("nan")
    return {**meta, "bare_tokens_per_s": pooled(bares), "ray_tokens_per_s": pooled(rays),
            "overhead": 1.0 - pooled(rays) / pooled(bares),
            "pair_overheads": [round(p, 4) for p in pair], "pair_overhead_mean": statistics.mean(pair),
            "pair_overhead_ci95": [statistics.mean(pair) - half, statistics.mean(pair) + half] if half is not None else None,
            "bare_split": {"even_chunks_tokens_per_s": even, "odd_chunks_tokens_per_s": odd,
                           "spread": abs(even - odd) / ((even + odd) / 2)},
            "steal_fraction_max": max(c["steal_fraction"] for c in chunks),
            "bare_chunk_busy_cores_max": max(c["busy_cores"] for c in bares), "chunks": columns(chunks)}


def columns(chunks: list[dict]) -> dict[str, list]:
    """The chunks in time order as one list per field (``side``, ``a``, ``b``, ``tokens_per_s``, ...)."""
    return {k: [c[k] for c in chunks] for k in chunks[0]} if chunks else {}


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--method", choices=["sft", "dpo"], default="sft")
    ap.add_argument("--runs", type=int, default=3, help="the goal is <= 10%% in every run")
    ap.add_argument("--pairs", type=int, default=12, help="bare + Ray chunk pairs a run (a final bare chunk closes)")
    ap.add_argument("--chunk-s", type=float, default=10.0, help="seconds a chunk")
    ap.add_argument("--side", choices=["prepare", "bare", "ray"], help=argparse.SUPPRESS)  # internal: one side's process
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        run_side(args.side, args.method, args.work, args.steps)
        return
    out = base.ROOT / "benchmarks" / "results" / "train_overhead.json"
    key = f"{args.method}_alternating_runs"
    runs = []
    for i in range(args.runs):
        r = one_run(args.method, args.pairs, args.chunk_s)
        runs.append(r)
        previous = json.loads(out.read_text()) if out.is_file() else {}
        out.write_text(json.dumps({**previous, key: runs}, indent=2))  # after every run
        ci = r["pair_overhead_ci95"]
        print(f"{args.method} run {i + 1}/{args.runs}: bare {r['bare_tokens_per_s']:.0f} tok/s, Ray Train "
              f"{r['ray_tokens_per_s']:.0f} tok/s, overhead {r['overhead'] * 100:.1f}% (pairs: mean "
              f"{r['pair_overhead_mean'] * 100:.1f}%, 95% {ci[0] * 100:.1f}..{ci[1] * 100:.1f}%), bare odd/even spread "
              f"{r['bare_split']['spread'] * 100:.1f}%, steal <= {r['steal_fraction_max'] * 100:.2f}%", flush=True)


if __name__ == "__main__":
    main()
