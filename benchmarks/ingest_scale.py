"""Ingest at scale: rows/s and peak memory of the driver and of the largest Ray worker, at growing row counts.

    python benchmarks/ingest_scale.py [--sizes 10000 100000 1000000] [--num-cpus 2] [--input-cache DIR]
    python benchmarks/ingest_scale.py --build-only --sizes 1000000 --input-cache DIR   # inputs only, no Ray

Rows are built from GSM8K (train + test) by templated recombination and light edits (deterministic): a framing
template, the sentences of one question with one sentence of another spliced in, a number changed, and the answer
of the first item; ~1 in 20 rows repeats an earlier row exactly and ~1 in 20 is a lightly edited copy (so exact and
near dedup have work). Written as JSONL files of at most 50,000 rows (``--input-cache``: built once into
DIR/rows-<n>/ and reused, so a timed run does not pay for it; the files are the same bytes either way). Each size runs ``run_ingest`` (tiny
tokenizer, exact + near dedup, sft packing on, 5 % validation split) in a fresh driver process on a fresh local
Ray cluster of ``--num-cpus``; a sampler thread records the peak RSS of the driver and of every Ray worker process
of that cluster (the driver's descendants, so another session's idle Ray processes are never counted), and the
driver's peak inside each pipeline stage (``driver_peak_rss_mb_by_stage``: where the driver's memory goes).
Goals (issue 18): driver peak RSS grows ≤ 300 MB from the smallest to the largest size; rows/s at the largest size
≥ 0.8 × rows/s at the second largest; the manifest's accounting invariants hold. Writes
benchmarks/results/ingest_scale.json after every size (rows of other sizes already in it are kept); each size's
Ray/pipeline log (with the near-dup pair counts) goes to ``<tmp>/ingest_scale-<n>.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEMPLATES = ["{q}", "Solve: {q}", "Word problem. {q}", "Question: {q}", "{q} Show your work.", "Try this one: {q}"]


def build_rows(shared: Path, n: int, seed: int = 0):
    """Yield n GSM8K-derived {question, answer} rows (see module docstring)."""
    items = []
    for name in ("train.jsonl", "test.jsonl"):
        items += [json.loads(l) for l in open(shared / "data" / "gsm8k" / name, encoding="utf-8")]
    sentences = [re.split(r"(?<=[.?!])\s+", it["question"]) for it in items]
    rng = random.Random(seed)
    recent: list[dict] = []
    for k in range(n):
        r = rng.random()
        if recent and r < 0.05:
            yield rng.choice(recent)  # exact repeat
            continue
        if recent and r < 0.10:
            row = dict(rng.choice(recent))
            words = row["question"].split()
            words[rng.randrange(len(words))] = rng.choice(["many", "some", "several", "a few"])
            yield {"question": " ".join(words), "answer": row["answer"]}  # near copy
            continue
        i, j = rng.randrange(len(items)), rng.randrange(len(items))
        parts = list(sentences[i])
        parts.insert(rng.randrange(len(parts)), rng.choice(sentences[j]))
        q = re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randrange(1, 9)), " ".join(parts), count=1)
        row = {"question": rng.choice(TEMPLATES).format(q=q), "answer": items[i]["answer"]}
        recent = (recent + [row])[-1000:]
        yield row


def write_files(shared: Path, n: int, folder: Path, per_file: int = 50_000) -> list[Path]:
    done = folder / "DONE"
    if done.exists():  # a cache built earlier by this function (the marker is written last)
        return sorted(folder.glob("part-*.jsonl"))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.jsonl"):
        old.unlink()
    files, fh = [], None
    for k, row in enumerate(build_rows(shared, n)):
        if k % per_file == 0:
            if fh:
                fh.close()
            files.append(folder / f"part-{len(files):04d}.jsonl")
            fh = open(files[-1], "w", encoding="utf-8")
        fh.write(json.dumps(row) + "\n")
    if fh:
        fh.close()
    done.write_text(f"{n}\n")
    return files


class PeakSampler(threading.Thread):
    """Samples every 0.2 s the RSS of this process and of each of its descendants that is a Ray worker (``ray::``
    in the name or ``default_worker.py`` on the command line): the workers of the cluster this driver started."""

    def __init__(self):
        super().__init__(daemon=True)
        self.driver = 0
        self.worker = 0
        self.worker_name = ""
        self.timeline: list[tuple[float, int]] = []  # (perf_counter, driver RSS) of every sample
        self.stop = threading.Event()

    def run(self):
        import psutil

        me = psutil.Process()
        while not self.stop.is_set():
            rss = me.memory_info().rss
            self.driver = max(self.driver, rss)
            self.timeline.append((time.perf_counter(), rss))
            try:
                family = me.children(recursive=True)
            except psutil.NoSuchProcess:
                family = []
            for p in family:
                try:
                    name = p.name() or ""
                    if name.startswith("ray::") or "default_worker.py" in " ".join(p.cmdline() or []):
                        rss = p.memory_info().rss
                        if rss > self.worker:
                            self.worker, self.worker_name = rss, name
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            time.sleep(0.2)


STAGES = ["read_validate_tokenize_s", "exact_dedup_s", "near_dedup_s", "contamination_s", "sampling_plan_s",
          "split_pack_write_s"]  # run_ingest's stages in the order they run (one after the other)


def driver_peak_by_stage(timeline: list[tuple[float, int]], start: float, stage_seconds: dict[str, float]
                         ) -> dict[str, float]:
    """Driver peak RSS (MB) inside each stage's window, the windows laid end to end from ``start`` in pipeline
    order; ``finish``: after the last stage (quarantine, clusters, manifest, publish)."""
    out, lo = {}, start
    for name in [s for s in STAGES if s in stage_seconds] + ["finish"]:
        hi = lo + stage_seconds[name] if name != "finish" else float("inf")
        inside = [rss for t, rss in timeline if lo <= t < hi]
        out[name.removesuffix("_s")] = max(inside) / 2**20 if inside else None
        lo = hi
    return out


def one_size(n: int, num_cpus: int, input_cache: str | None = None) -> dict:
    """Build n rows, ingest them in this process, return the measurements (run in a fresh process per size)."""
    import logging
    import resource

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("app").setLevel(logging.INFO)  # the pipeline's own summary lines go to the size's log

    from app.config.common import RaySpec
    from app.config.ingest import IngestConfig
    from app.config.paths import shared_dir
    from app.data.pipeline import run_ingest
    from app.launch.runtime import init_ray

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        inputs = Path(input_cache) / f"rows-{n}" if input_cache else tmp / "in"
        cached = (inputs / "DONE").exists()
        files = write_files(shared_dir(), n, inputs)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        init_ray(RaySpec(num_cpus=num_cpus))
        ray_start_s = time.perf_counter() - t
        sampler = PeakSampler()
        sampler.start()
        cfg = IngestConfig(name="scale", record_type="sft", model={"source": "tiny:llama"}, max_length=512,
                           validation_fraction=0.05, sources=[{"path": str(inputs / "*.jsonl")}])
        t = time.perf_counter()
        art = run_ingest(cfg, out_dir=tmp / "out", progress=False)
        seconds = time.perf_counter() - t
        sampler.stop.set()
        sampler.join()
        m = art.manifest
        by_stage = driver_peak_by_stage(sampler.timeline, t, m["stage_seconds"])
        ok = (m["rows_read"] == m["rows_accepted"] + m["rows_rejected"] == n and m["rows_accepted"] == m["rows_kept"]
              + m["exact_dups_removed"] + m["near_dups_removed"] + m["contaminated_dropped"])
        return {"rows": n, "files": len(files), "seconds": seconds, "rows_per_s": n / seconds,
                "driver_peak_rss_mb": max(sampler.driver, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20,
                "driver_peak_rss_mb_by_stage": by_stage,
                "largest_worker_peak_rss_mb": sampler.worker / 2**20, "largest_worker": sampler.worker_name,
                "accounting_ok": ok, "build_rows_s": build_s, "inputs_cached": cached, "ray_start_s": ray_start_s,
                **{k: m[k] for k in ("rows_read", "rows_accepted", "rows_rejected", "rows_kept", "exact_dups_removed",
                                     "near_dups_removed", "packed_windows", "packing_efficiency", "stage_seconds")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--input-cache", help="build each size's input files once into this folder and reuse them")
    ap.add_argument("--build-only", action="store_true", help="only build the input files (needs --input-cache)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size, print its JSON
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.build_only:
        if not args.input_cache:
            ap.error("--build-only needs --input-cache")
        from app.config.paths import shared_dir

        for n in args.sizes:
            t = time.perf_counter()
            files = write_files(shared_dir(), n, Path(args.input_cache) / f"rows-{n}")
            print(f"{n} rows: {len(files)} files in {time.perf_counter() - t:.1f}s")
        return 0
    if args.one:
        print("RESULT " + json.dumps(one_size(args.one, args.num_cpus, args.input_cache)), flush=True)
        return 0
    dest = ROOT / "benchmarks" / "results" / "ingest_scale.json"
    old = json.loads(dest.read_text()) if dest.exists() else {}
    runs = {str(r["rows"]): r for r in old.get("runs", [])}
    for n in args.sizes:
        log_path = Path(tempfile.gettempdir()) / f"ingest_scale-{n}.log"
        cmd = [sys.executable, __file__, "--one", str(n), "--num-cpus", str(args.num_cpus)]
        cmd += ["--input-cache", args.input_cache] if args.input_cache else []
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                  env=dict(os.environ, PYTHONPATH=str(ROOT)))
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-3000:], log_path.read_text()[-3000:])
            return 1
        r = json.loads(line[7:])
        r["load_average_1m_after"] = os.getloadavg()[0]
        runs[str(n)] = r
        print(f"{n:>9d} rows: {r['seconds']:7.1f}s {r['rows_per_s']:7.0f} rows/s, driver peak {r['driver_peak_rss_mb']:.0f} MB,"
              f" largest worker peak {r['largest_worker_peak_rss_mb']:.0f} MB, accounting ok {r['accounting_ok']}", flush=True)
        _write(dest, runs, args.num_cpus)  # after every size: a later size that runs out of time loses only itself
    return 0


def _write(dest: Path, runs: dict[str, dict], num_cpus: int) -> None:
    ordered = [runs[k] for k in sorted(runs, key=int)]
    out = {"num_cpus": num_cpus, "load_average_1m": os.getloadavg()[0], "runs": ordered}
    if len(ordered) >= 2:
        out["driver_rss_growth_mb"] = ordered[-1]["driver_peak_rss_mb"] - ordered[0]["driver_peak_rss_mb"]
        out["rows_per_s_ratio_largest_vs_previous"] = ordered[-1]["rows_per_s"] / ordered[-2]["rows_per_s"]
        out["sizes"] = [r["rows"] for r in ordered]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
