"""Node-level fault drills on a simulated multi-node Ray cluster (app/launch/sim_cluster.py), tiny Llama models.

    python benchmarks/cluster_drills.py --drills 1,4      # writes benchmarks/results/cluster_drills.json
    python benchmarks/cluster_drills.py --drills 1dpo,2,3  # drills run separately add up in the same file

Drill 1 (node loss, SFT; ``1dpo``: the same with DPO on HH-RLHF pairs): 2 Train workers on 2 worker nodes (2 CPUs
each; a worker needs 2, the head has 1, so one worker per node). One step after the step-10 checkpoint lands, node
``a`` is killed (raylet + workers, SIGKILL) and a replacement node joins; Ray Train restarts the worker group from the
newest checkpoint.
Drill 2 (PPO actor node loss): GAE PPO with a critic, policy (HF rollouts) and critic on different 1-CPU nodes; mid
iteration 5 (after the iteration-3 checkpoint) the node holding the critic, then in a second run the node holding
the rollout/policy actor, is killed and a replacement joins; the PPO driver replaces its actors and restores the
newest checkpoint.
Drill 3 (Serve): 2 engine replicas on 2 nodes under 50 requests/s open-loop load; one node is killed at 8 s.
Drill 4 (whole-cluster loss, the managed-spot relaunch): the same run with ``ray.storage_path`` on a local S3
(moto server): the driver and every node of its cluster are SIGKILLed mid-training, then the same command on a
fresh cluster resumes from the checkpoint in the bucket.

Per training drill: steps lost (steps trained after the restored checkpoint and before the kill: MLflow's per-step
loss entries logged before the kill; PPO: iterations completed before the kill after the restored one), recovery
seconds (kill, or relaunch, to the first step of the resumed run; PPO: kill to actors replaced and state restored),
and the largest per-step loss (PPO: per-iteration metric) difference against an uninterrupted run on the same
cluster shape (goal <= 1e-6).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cluster_drills_actors import PPO_EVERY, PPO_ITERS, PPO_KILL_AFTER, drill2, drill3  # noqa: E402 (benchmarks/ is the script's folder)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cluster_drills.json"
TINY = ROOT / "configs" / "tiny" / "sft_lora.yaml"
TINY_DPO = ROOT / "configs" / "tiny" / "dpo_sigmoid.yaml"
STEPS, EVERY, KILL_AFTER = 24, 5, 10  # kill one step after the step-10 checkpoint: up to EVERY steps at risk


TRAIN_OVERRIDES = [f"train.max_steps={STEPS}", "train.epochs=50", "train.log_every=1", f"checkpoint.every_steps={EVERY}",
                   "checkpoint.keep=2", "scaling.num_workers=2", "scaling.cpus_per_worker=2", "scaling.max_failures=3",
                   "tracking.enabled=true", "tracking.experiment=drills"]


def train_cfg(kind: str, artifact: str, storage: str, run_name: str, mlflow_db: Path):
    """The tiny SFT (configs/tiny/sft_lora.yaml) or DPO (configs/tiny/dpo_sigmoid.yaml) run of drills 1 and 4."""
    from app.config.dpo import DPOConfig
    from app.config.loader import load_config
    from app.config.sft import SFTConfig

    path, schema = (TINY, SFTConfig) if kind == "sft" else (TINY_DPO, DPOConfig)
    return load_config(path, schema, [
        f"data.artifact={artifact}", f"ray.storage_path={storage}", f"ray.run_name={run_name}",
        f"tracking.mlflow_uri=sqlite:///{mlflow_db}", *TRAIN_OVERRIDES])


def sft_cfg(artifact: str, storage: str, run_name: str, mlflow_db: Path):
    return train_cfg("sft", artifact, storage, run_name, mlflow_db)


def write_artifact(folder: Path) -> Path:
    """A small packed SFT artifact from real GSM8K through the ingest pipeline, tokenized for tiny:llama."""
    from app.config.ingest import IngestConfig
    from app.config.loader import load_config
    from app.config.paths import shared_dir
    from app.data.pipeline import run_ingest

    gsm8k = Path(shared_dir()) / "data" / "gsm8k" / "train.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    subset = folder / "gsm8k_300.jsonl"
    with open(gsm8k, encoding="utf-8") as f, open(subset, "w", encoding="utf-8") as out:
        for _, line in zip(range(300), f):
            out.write(line)
    cfg = load_config(ROOT / "configs" / "ingest" / "smollm2_gsm8k_sft.yaml", IngestConfig, [
        f"sources=[{{path: {subset}, input_format: gsm8k}}]", "model.source=tiny:llama", "max_length=128",
        "dedup.near=false", "contamination.benchmarks=[]", "validation_fraction=0.0", f"output_dir={folder}"])
    return Path(run_ingest(cfg, out_dir=folder, progress=False).path)


def write_preference_artifact(folder: Path) -> Path:
    """Preference pairs from real HH-RLHF (first 300 transcripts) through the ingest pipeline, for tiny:llama, with
    the DPO reference log-probs precomputed into it (as ``fit_preference`` does before training)."""
    import gzip

    from app.config.ingest import IngestConfig
    from app.config.loader import load_config
    from app.config.paths import shared_dir
    from app.data.pipeline import run_ingest
    from app.launch.preference import ensure_reference_logprobs

    folder.mkdir(parents=True, exist_ok=True)
    subset = folder / "hh_300.jsonl"
    with gzip.open(Path(shared_dir()) / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as f, \
            open(subset, "w", encoding="utf-8") as out:
        for _, line in zip(range(300), f):
            out.write(line)
    cfg = load_config(ROOT / "configs" / "ingest" / "smollm2_hh_preference.yaml", IngestConfig, [
        f"sources=[{{path: {subset}, input_format: hh_rlhf}}]", "model.source=tiny:llama", "max_length=256",
        "validation_fraction=0.0", f"output_dir={folder}"])
    path = str(run_ingest(cfg, out_dir=folder, progress=False).path)
    ensure_reference_logprobs(train_cfg("dpo", path, str(folder / "unused"), "precompute", folder / "unused.db"))
    return Path(path)


def newest_checkpoint_step(run_dir: Path) -> int:
    steps = [json.loads(m.read_text()).get("step", 0) for m in run_dir.glob("checkpoint_*/rayalign_checkpoint.json")]
    return max(steps, default=0)


def logged_steps(mlflow_db: Path, run_id: str) -> list[tuple[int, float]]:
    """(step, timestamp s) of every 'loss' entry of an MLflow run, duplicates included (a step redone after resume)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{mlflow_db}")
    return sorted((m.step, m.timestamp / 1000) for m in client.get_metric_history(run_id, "loss"))


def drill_numbers(history: list[dict], baseline: list[dict], entries: list[tuple[int, float]], t_kill: float,
                  restored: int, t_restart: float) -> dict:
    if not entries:
        raise RuntimeError("MLflow holds no per-step 'loss' entries for this run: steps lost cannot be counted")
    lost = sorted({s for s, t in entries if s > restored and t < t_kill})
    new_steps = [h for h in history if h["step"] > restored]
    same = len(history) == len(baseline) and all(a["step"] == b["step"] for a, b in zip(history, baseline))
    diff = max(abs(a["loss"] - b["loss"]) for a, b in zip(history, baseline)) if same else None
    return {"restored_from_step": restored, "steps_lost": len(lost), "lost_steps": lost, "checkpoint_every": EVERY,
            "recovery_s": round(new_steps[0]["wall_start"] - t_restart, 1) if new_steps else None,
            "max_loss_diff_vs_uninterrupted": diff, "steps": len(history)}


def drill1(sim, artifact: str, work: Path, baseline: list[dict], kind: str = "sft") -> dict:
    from app.launch.run import run_training

    db = work / "mlflow.db"
    out: list = []
    name = f"d1-kill-{kind}"

    def train() -> None:
        try:
            out.append(run_training(kind, train_cfg(kind, artifact, str(work / "runs"), name, db)))
        except Exception as exc:  # noqa: BLE001 - reported in the results
            out.append(exc)

    thread = threading.Thread(target=train)
    thread.start()
    run_dir = work / "runs" / name
    while newest_checkpoint_step(run_dir) < KILL_AFTER and thread.is_alive():
        time.sleep(0.1)
    time.sleep(baseline_step_s(baseline))  # mid-interval: one step after the checkpoint
    t_kill = sim.kill_node("a")
    sim.add_node("a2", cpus=2)
    replaced = time.time()
    thread.join()
    res = out[0]
    if isinstance(res, Exception):
        return {"status": "failed", "error": f"{type(res).__name__}: {res}"[:2000]}
    numbers = drill_numbers(res.history, baseline, logged_steps(db, _run_id(db, name)), t_kill,
                            res.resumed_from[0] if res.resumed_from else 0, t_kill)
    return {"status": res.status, "resumed_from": res.resumed_from, "replacement_node_up_s": round(replaced - t_kill, 1),
            **numbers}


def _run_id(db: Path, run_name: str) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("drills")
    runs = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{run_name}'")
    return runs[0].info.run_id


def baseline_step_s(history: list[dict]) -> float:
    starts = [h["wall_start"] for h in history]
    return (starts[-1] - starts[0]) / max(1, len(starts) - 1)


# ---------------------------------------------------------------- drill 4: child process = one spot VM's driver + cluster
def child_run(artifact: str, storage: str, run_name: str, work: Path) -> None:
    from app.launch.sim_cluster import SimCluster
    from app.launch.run import run_sft

    with SimCluster(head_cpus=1) as sim:
        sim.add_node("a", cpus=2)
        sim.add_node("b", cpus=2)
        cfg = sft_cfg(artifact, storage, run_name, work / "mlflow.db")
        cfg.ray.address = sim.address
        out = run_sft(cfg)
        print("DRILL_RESULT " + json.dumps({"status": out.status, "history": out.history, "resumed_from": out.resumed_from}),
              flush=True)


def s3_checkpoint_step(client, bucket: str, prefix: str) -> int:
    best = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("rayalign_checkpoint.json"):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                best = max(best, json.loads(body).get("step", 0))
    return best


def kill_tree(pid: int) -> int:
    """SIGKILL a process and every descendant (the driver, its Ray nodes and their workers): a vanished VM."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    return len(procs)


def drill4(artifact: str, work: Path, baseline: list[dict]) -> dict:
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1", PYTHONPATH=str(ROOT))
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="spot")
    cmd = [sys.executable, __file__, "--child", "--artifact", artifact, "--storage", "s3://spot/runs",
           "--run-name", "d4-spot", "--work", str(work)]
    try:
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while s3_checkpoint_step(client, "spot", "runs/d4-spot/") < KILL_AFTER and first.poll() is None:
            time.sleep(0.2)
        time.sleep(baseline_step_s(baseline))
        t_kill = time.time()
        killed = kill_tree(first.pid)
        first.communicate()
        in_bucket = s3_checkpoint_step(client, "spot", "runs/d4-spot/")
        t_relaunch = time.time()
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        lines = [line for line in second.stdout.splitlines() if line.startswith("DRILL_RESULT ")]
        if second.returncode != 0 or not lines:
            return {"status": "failed", "tail": (second.stdout + second.stderr)[-3000:]}
        res = json.loads(lines[-1].split(" ", 1)[1])
        restored = res["resumed_from"][0] if res["resumed_from"] else 0
        numbers = drill_numbers(res["history"], baseline, logged_steps(work / "mlflow.db", _run_id(work / "mlflow.db", "d4-spot")),
                                t_kill, restored, t_relaunch)
        return {"status": res["status"], "resumed_from": res["resumed_from"], "processes_killed": killed,
                "checkpoint_step_in_bucket": in_bucket, **numbers,
                "note": "recovery_s counts from the relaunch of the same command (fresh cluster start included)"}
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drills", default="1,4")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--artifact")
    ap.add_argument("--storage")
    ap.add_argument("--run-name")
    ap.add_argument("--work")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.child:
        child_run(args.artifact, args.storage, args.run_name, Path(args.work))
        return 0
    import ray

    from app.launch.sim_cluster import SimCluster
    from app.launch.run import run_sft, run_training

    wanted = set(args.drills.split(","))
    work = Path(tempfile.mkdtemp(prefix="cluster-drills-"))
    out = Path(args.out)
    results: dict = json.loads(out.read_text()) if out.is_file() else {}  # drills run separately add up
    results["config"] = {"steps": STEPS, "checkpoint_every": EVERY, "kill_after_checkpoint": KILL_AFTER,
                         "train_nodes": "head 1 CPU + 2 worker nodes x 2 CPUs, 2 Train workers x 2 CPUs",
                         "serve_nodes": "head 1 CPU (proxy, ingress) + 2 worker nodes x 1 CPU, 2 engine replicas x 1 CPU",
                         "ppo": {"iterations": PPO_ITERS, "checkpoint_every": PPO_EVERY, "kill_after_iteration": PPO_KILL_AFTER,
                                 "nodes": "head 0 CPU + 2 worker nodes x 1 CPU; policy 0.9, critic 0.9, reward 0.1 CPU"}}
    t0 = time.time()
    if wanted & {"1", "1dpo", "4"}:
        with SimCluster(head_cpus=1) as sim:
            sim.add_node("a", cpus=2)
            sim.add_node("b", cpus=2)
            ray.init(address=sim.address, include_dashboard=False)
            if wanted & {"1", "4"}:
                artifact = str(write_artifact(work / "datasets"))
                base = run_sft(sft_cfg(artifact, str(work / "runs"), "baseline", work / "mlflow.db"))
                results["baseline"] = {"status": base.status, "steps": base.step,
                                       "step_s": round(baseline_step_s(base.history), 3)}
            if "1" in wanted:
                results["drill1_node_kill"] = drill1(sim, artifact, work, base.history)
                print("drill 1:", json.dumps(results["drill1_node_kill"]), flush=True)
                out.write_text(json.dumps(results, indent=2))
            if "1dpo" in wanted:
                pairs = str(write_preference_artifact(work / "preference"))
                base_dpo = run_training("dpo", train_cfg("dpo", pairs, str(work / "runs"), "baseline-dpo", work / "mlflow.db"))
                results["baseline_dpo"] = {"status": base_dpo.status, "steps": base_dpo.step,
                                           "step_s": round(baseline_step_s(base_dpo.history), 3)}
                results["drill1_node_kill_dpo"] = drill1(sim, pairs, work, base_dpo.history, "dpo")
                print("drill 1 (dpo):", json.dumps(results["drill1_node_kill_dpo"]), flush=True)
                out.write_text(json.dumps(results, indent=2))
        if "4" in wanted:
            results["drill4_whole_cluster_s3"] = drill4(artifact, work, base.history)
            print("drill 4:", json.dumps({k: v for k, v in results["drill4_whole_cluster_s3"].items() if k != "tail"}), flush=True)
    if "2" in wanted:
        results["drill2_ppo_node_kill"] = drill2(work)
        out.write_text(json.dumps(results, indent=2))
    if "3" in wanted:
        results["drill3_serve_node_kill"] = drill3(work)
        print("drill 3:", json.dumps(results["drill3_serve_node_kill"]), flush=True)
    results["last_run_s"] = round(time.time() - t0, 1)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
