"""Drills 2 and 3 of ``benchmarks/cluster_drills.py`` (the actor drills, not Ray Train): a PPO actor's node killed
mid-iteration (``drill2``) and a Serve engine replica's node killed under open-loop load (``drill3``), each on a
simulated multi-node cluster (app/launch/sim_cluster.py). Run them through ``cluster_drills.py --drills 2,3``."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- drill 2: PPO actor node lost
PPO_ITERS, PPO_EVERY, PPO_KILL_AFTER = 8, 3, 4  # kill mid-iteration 5: iteration 4 (after the iteration-3 checkpoint) is at risk
PPO_COMPARED = ("reward_mean", "kl", "policy_loss", "value_loss", "approx_kl")


def ppo_cfg(out_dir: Path):
    """Tiny PPO with a critic, roles disaggregated: policy (HF rollouts) and critic need 0.9 CPU each, so on two
    1-CPU nodes they land on different nodes (the reward actor, 0.1 CPU, joins one of them)."""
    from app.config.loader import load_config
    from app.config.ppo import PPOConfig

    return load_config(ROOT / "configs" / "tiny" / "ppo_gae.yaml", PPOConfig, [
        f"run.output_dir={out_dir}", f"run.iterations={PPO_ITERS}", f"run.checkpoint_every={PPO_EVERY}",
        "placement.colocate=false", "placement.policy_cpus=0.9", "placement.value_cpus=0.9", "placement.reward_cpus=0.1"])


def ppo_run(sim, out_dir: Path, kill_role: str | None) -> dict:
    """One PPO run on the sim cluster; with ``kill_role`` the node holding that role's actor is killed mid-iteration
    ``PPO_KILL_AFTER + 1`` and a replacement node joins. The driver's own fault handling does the rest."""
    from ray.util import placement_group_table

    from app.ppo.driver import PPODriver

    class TimedDriver(PPODriver):
        """The driver unchanged, plus a clock on ``restore`` (when the actors were back and the state loaded)."""

        def restore(self, folder):
            digest = super().restore(folder)
            self.restores = [*getattr(self, "restores", []), {"t": time.time(), "iteration": self.iteration}]
            return digest

    driver = TimedDriver(ppo_cfg(out_dir), out_dir)
    where = placement_group_table(driver.placement.group)["bundles_to_node_id"]
    nodes = {role: sim.name_of(where[b[0]]) for role, b in driver.placement.bundle_of.items()}
    done: list[tuple[int, float]] = []
    reached = threading.Event()
    out: list = []

    def on_iteration(_drv, metrics: dict) -> None:
        done.append((metrics["iteration"], time.time()))
        if metrics["iteration"] == PPO_KILL_AFTER:
            reached.set()

    def loop() -> None:
        try:
            out.append(driver.run(on_iteration=on_iteration))
        except Exception as exc:  # noqa: BLE001 - reported in the results
            out.append(exc)
        finally:
            reached.set()

    t0 = time.time()
    thread = threading.Thread(target=loop)
    thread.start()
    marks: dict = {}
    if kill_role:
        reached.wait()
        if thread.is_alive() and len(done) >= 2:
            time.sleep((done[-1][1] - done[-2][1]) / 2)  # mid-iteration
            victim = nodes[kill_role]
            marks["kill"] = sim.kill_node(victim)  # adds happen in this (main) thread: Ray's Node needs it
            sim.add_node(f"{victim}2", cpus=1)
            marks["node_up"] = time.time()
    thread.join()
    driver.shutdown()
    res = out[0]
    row = {"roles_on_nodes": nodes, "wall_s": round(time.time() - t0, 1), "restarts": driver.restarts}
    if isinstance(res, Exception):
        return {**row, "status": "failed", "error": f"{type(res).__name__}: {res}"[:2000]}
    row |= {"status": "finished" if res and res[-1]["iteration"] == PPO_ITERS else "incomplete",
            "iterations": [h["iteration"] for h in res], "history": [{k: h[k] for k in PPO_COMPARED} for h in res]}
    if kill_role and "kill" in marks:
        kill = marks["kill"]
        restored = driver.restores[-1] if driver.restarts else {"t": None, "iteration": None}
        after = [t for it, t in done if t > kill]
        row |= {"killed_role": kill_role, "killed_node": nodes[kill_role],
                "roles_lost": sorted(r for r, n in nodes.items() if n == nodes[kill_role]),
                "restored_from_iteration": restored["iteration"], "checkpoint_every": PPO_EVERY,
                "iterations_lost": len({it for it, t in done if restored["iteration"] is not None
                                        and it > restored["iteration"] and t < kill}),
                "replacement_node_up_s": round(marks["node_up"] - kill, 1),
                "recovery_s": round(restored["t"] - kill, 1) if restored["t"] else None,
                "first_iteration_after_kill_s": round(after[0] - kill, 1) if after else None}
    return row


def drill2(work: Path) -> dict:
    """PPO (GAE with a critic, HF rollouts in the policy actor) on head 0 CPU + 2 nodes x 1 CPU: an uninterrupted
    run, then the node holding the critic killed, then the node holding the rollout (policy) actor killed."""
    import ray

    from app.launch.sim_cluster import SimCluster

    out: dict = {}
    with SimCluster(head_cpus=0) as sim:
        sim.add_node("a", cpus=1)
        sim.add_node("b", cpus=1)
        ray.init(address=sim.address, include_dashboard=False)
        out["baseline"] = ppo_run(sim, work / "ppo-baseline", None)
        for role in ("value", "policy"):
            row = ppo_run(sim, work / f"ppo-kill-{role}", role)
            base = out["baseline"].get("history", [])
            if row.get("history") and len(row["history"]) == len(base):
                row["max_metric_diff_vs_uninterrupted"] = max(abs(a[k] - b[k]) for a, b in zip(row["history"], base)
                                                              for k in PPO_COMPARED)
            out[f"kill_{role}_node"] = row
            print(f"drill 2 ({role} node):", json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)
    for row in out.values():
        row.pop("history", None)
    return out


# ---------------------------------------------------------------- drill 3: Serve replica node lost under load
SERVE_RATE, SERVE_SECONDS, SERVE_KILL_AT, SERVE_KEY = 50.0, 20.0, 8.0, "sk-drill"


async def serve_load(url: str, rate: float, seconds: float) -> list[dict]:
    """Open-loop load: request i leaves at t0 + i/rate whatever earlier ones are doing; each records start/end/ok."""
    import asyncio

    import httpx

    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "count"}], "max_tokens": 4, "temperature": 0}
    out: list[dict] = []

    async def one(client, due: float) -> None:
        await asyncio.sleep(max(0.0, due - time.time()))
        t = time.time()
        try:
            r = await client.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {SERVE_KEY}"})
            out.append({"t": t, "end": time.time(), "ok": r.status_code == 200, "code": r.status_code})
        except httpx.HTTPError as exc:
            out.append({"t": t, "end": time.time(), "ok": False, "code": type(exc).__name__})

    t0 = time.time() + 0.5
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
        await asyncio.gather(*(one(client, t0 + i / rate) for i in range(int(rate * seconds))))
    return out


def running_engine_replicas(app: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments["Engine"]
    return int(status.replica_states.get("RUNNING", 0))


def drill3(work: Path) -> dict:
    """2 HF engine replicas of the tiny model, one per worker node (1 CPU each; the head's CPU is taken by the
    ingress); node ``a`` is killed under open-loop load and a replacement node joins."""
    import asyncio

    import ray
    from ray import serve

    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.launch.sim_cluster import SimCluster
    from app.serve.app import build_app
    from app.serve.auth import hash_key

    (work / "adapters").mkdir(exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SimCluster(head_cpus=1) as sim:
        sim.add_node("a", cpus=1)
        sim.add_node("b", cpus=1)
        ray.init(address=sim.address, include_dashboard=False)
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        cfg = load_config(None, ServeConfig, [
            "model.source=tiny:llama", "engine=hf", f"adapters.root={work / 'adapters'}", "engine_deployment.num_cpus=1",
            "engine_deployment.min_replicas=2", "engine_deployment.max_replicas=2", "ingress_deployment.num_cpus=0.5",
            "limits.max_tokens=8", "limits.max_model_len=256", f"tenants=[{{name: drill, api_key_sha256: [{hash_key(SERVE_KEY)}]}}]"])
        serve.run(build_app(cfg), name="drill", route_prefix="/", blocking=False)
        nodes_of = {r["NodeID"] for r in ray.nodes() if r["Alive"]}
        marks: dict = {}
        load: list = []  # the load runs in a thread: Ray adds nodes only from the main thread (signal handlers)
        thread = threading.Thread(target=lambda: load.append(asyncio.run(
            serve_load(f"http://127.0.0.1:{port}", SERVE_RATE, SERVE_SECONDS))))
        thread.start()
        time.sleep(SERVE_KILL_AT + 0.5)
        marks["kill"] = sim.kill_node("a")
        sim.add_node("a2", cpus=1)
        marks["node_up"] = time.time()
        while running_engine_replicas("drill") < 2 and time.time() - marks["kill"] < 120:
            time.sleep(0.2)
        marks["replica_back"] = time.time()
        thread.join()
        serve.shutdown()
    results = load[0]
    failed = [r for r in results if not r["ok"]]
    kill = marks["kill"]
    return {
        "rate_rps": SERVE_RATE, "seconds": SERVE_SECONDS, "sent": len(results), "failed": len(failed),
        "failed_codes": sorted({str(r["code"]) for r in failed}),
        "failed_in_flight_at_kill": sum(1 for r in failed if r["t"] <= kill <= r["end"]),
        "failed_after_kill": sum(1 for r in failed if r["t"] > kill),
        "achieved_rps": round(len(results) / (max(r["end"] for r in results) - min(r["t"] for r in results)), 1),
        "p50_latency_s": round(sorted(r["end"] - r["t"] for r in results)[len(results) // 2], 3),
        "replacement_node_up_s": round(marks["node_up"] - kill, 1),
        "replica_recovered_s": round(marks["replica_back"] - kill, 1), "nodes_before": len(nodes_of),
    }
