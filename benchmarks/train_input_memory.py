"""Training-input memory: peak RSS of each SFT training worker over 20 steps on a packed artifact and on one 10× larger.

    python benchmarks/train_input_memory.py [--rows 4000] [--factor 10] [--steps 20] [--work DIR] [--label streaming]
    python benchmarks/train_input_memory.py --build-only --work DIR        # the two artifacts only, no Ray

Two packed SFT artifacts of random tokens at max_length 512 (``app.data.synthetic.write_packed_artifact``, Parquet
row groups of 4,096 rows like an ingest's per-block files): ``--rows`` and ``--factor``× as many. For each, a fresh
driver process starts a local Ray cluster (2 CPUs) and trains the tiny Llama with LoRA (configs/tiny/sft_lora.yaml:
2 workers, DDP, micro-batch 2 × grad-accum 2, checkpoint every 10 steps) for ``--steps`` steps; a sampler thread
records every 0.2 s the RSS of each Ray Train worker process (``RayTrainWorker`` in its name; the driver's own
descendants only). Goal (issue 18): the largest worker peak on the large artifact ≤ 1.2 × the one on the small.
``--label`` names the result entry (e.g. run the script against an older checkout to compare loaders); results merge
into benchmarks/results/train_input_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_worker_niceness", "0")


class TrainWorkerPeaks(threading.Thread):
    """Peak RSS per Ray Train worker process among this process's descendants, sampled every 0.2 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self):
        import psutil

        me = psutil.Process()
        while not self.stop.is_set():
            for p in me.children(recursive=True):
                try:
                    if "RayTrainWorker" in p.name() or "RayTrainWorker" in " ".join(p.cmdline()):
                        self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), p.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            time.sleep(0.2)


def build(work: Path, rows: int, factor: int) -> dict[str, Path]:
    """The small and the large artifact (built once per folder; a marker file says the build finished)."""
    from app.data.synthetic import write_packed_artifact

    out = {}
    for name, n in (("small", rows), ("large", rows * factor)):
        folder = work / f"packed-{n}"
        if not (folder / "DONE").exists():
            t = time.perf_counter()
            write_packed_artifact(folder, n_rows=n, max_length=512, seed=1, row_group_size=4096)
            (folder / "DONE").write_text(f"{n}\n")
            print(f"built {n} packed rows in {time.perf_counter() - t:.1f}s", flush=True)
        out[name] = folder
    return out


def one_run(artifact: Path, steps: int) -> dict:
    """Train ``steps`` steps on ``artifact`` in this process; the workers' peak RSS and the run's figures."""
    from app.config.loader import load_config
    from app.config.sft import SFTConfig
    from app.launch.run import run_training

    with tempfile.TemporaryDirectory() as storage:
        cfg = load_config(ROOT / "configs/tiny/sft_lora.yaml", SFTConfig, [
            f"data.artifact={artifact}", f"ray.storage_path={storage}", "ray.run_name=input-memory", "ray.num_cpus=2",
            "scaling.num_workers=2", "scaling.cpus_per_worker=0.5", f"train.max_steps={steps}", "train.epochs=1",
            "train.micro_batch_size=2", "train.grad_accum=2", "checkpoint.every_steps=10"])
        sampler = TrainWorkerPeaks()
        sampler.start()
        t = time.perf_counter()
        out = run_training("sft", cfg)
        seconds = time.perf_counter() - t
        sampler.stop.set()
        sampler.join()
    peaks = sorted(sampler.peaks.values(), reverse=True)
    return {"status": out.status, "steps": out.step, "seconds": seconds, "losses": [h["loss"] for h in out.history],
            "worker_peak_rss_mb": [p / 2**20 for p in peaks], "largest_worker_peak_rss_mb": peaks[0] / 2**20 if peaks else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--work", help="folder for the two artifacts (kept and reused; default: a temporary folder)")
    ap.add_argument("--label", default="streaming")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: train on this artifact, print the JSON
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one_run(Path(args.one), args.steps)), flush=True)
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="rayalign-input-memory-"))
    arts = build(work, args.rows, args.factor)
    if args.build_only:
        return 0
    result: dict = {"rows": {k: args.rows * (args.factor if k == "large" else 1) for k in arts}, "steps": args.steps,
                    "max_length": 512, "row_group_size": 4096}
    for name, folder in arts.items():
        log = Path(tempfile.gettempdir()) / f"train_input_memory-{args.label}-{name}.log"
        with open(log, "w") as fh:
            proc = subprocess.run([sys.executable, __file__, "--one", str(folder), "--steps", str(args.steps)],
                                  stdout=subprocess.PIPE, stderr=fh, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-2000:], log.read_text()[-3000:])
            return 1
        result[name] = json.loads(line[7:])
        print(f"{args.label} {name} ({result['rows'][name]} rows): {result[name]['steps']} steps in "
              f"{result[name]['seconds']:.1f}s, worker peaks {[round(x) for x in result[name]['worker_peak_rss_mb']]} MB",
              flush=True)
    result["large_vs_small_peak_ratio"] = (result["large"]["largest_worker_peak_rss_mb"]
                                           / result["small"]["largest_worker_peak_rss_mb"])
    result["load_average_1m"] = os.getloadavg()[0]
    dest = ROOT / "benchmarks" / "results" / "train_input_memory.json"
    previous = json.loads(dest.read_text()) if dest.exists() else {}
    dest.write_text(json.dumps({**previous, args.label: result}, indent=2))
    print(f"{args.label}: large/small largest worker peak = {result['large_vs_small_peak_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
