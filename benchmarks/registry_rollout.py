"""Serving follows the registry (issue 19): a rollback drill with 50 requests in flight and a 10% canary over 1,000
requests, through real HTTP (Serve proxy → ingress → HF engine, tiny model) with the registry resolver.

Two real peft adapters (seeded random LoRA) are registered as v1 and v2 of tenant acme's "math" (gates recorded as
passed). Every answer names the version that produced it (``system_fingerprint``: ``acme/math@v<N>-<hash>``).
  drill   50 clients loop requests; v1 is production; `deploy v2` (promote) → requests answer v2 → `rollback` →
          requests answer v1. Switch time = from the command's return to the start of the last request that still
          got the old version although it started after the command returned and ended before the next command
          (0 when none did); first_new_s = to the first answer from the new version.
          Failures = non-200 answers during the whole drill (goal 0).
  canary  v2 deployed at --share (0.1) beside production v1; --requests (1000) requests at 16 in flight: observed
          share (goal within ±3 points); then the canary is rolled back and the next 20 sequential requests must
          all answer v1 (the first one included).

    python benchmarks/registry_rollout.py [--requests 1000] [--share 0.1] [--inflight 50] [--refresh-s 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

KEY = "sk-rollout-acme"


async def one(client, url: str) -> tuple[float, float, int, str]:
    t0 = time.time()
    try:
        r = await client.post(url, headers={"Authorization": f"Bearer {KEY}"}, json={
            "model": "math", "max_tokens": 2, "temperature": 0, "messages": [{"role": "user", "content": "2+2?"}]})
        fp = r.json().get("system_fingerprint", "") if r.status_code == 200 else r.text[:200]
        return t0, time.time(), r.status_code, fp
    except Exception as exc:  # noqa: BLE001 - a failed request is a result here
        return t0, time.time(), 0, f"{type(exc).__name__}"


def version_of(fp: str) -> str:
    return fp.split("@")[1].split("-")[0] if "@" in fp else "?"


def switch(records, t_cmd: float, old: str, new: str, until: float = float("inf")) -> dict:
    """Requests that started after the command returned and ended before the next command (``until``) began, i.e.
    ran wholly under the new setting: those that still got ``old`` are stale. A request still running when the next
    command starts may legitimately answer either version: it is counted apart (``straddling_next_command``)."""
    inside = [r for r in records if r[0] >= t_cmd and r[1] < until]
    stale = [r for r in inside if version_of(r[3]) == old]
    fresh = [r for r in records if r[1] >= t_cmd and version_of(r[3]) == new]
    return {"switch_s": round(max((r[0] for r in stale), default=t_cmd) - t_cmd, 3),
            "requests_wholly_after_command": len(inside),
            "stale_answers_after_command": len(stale),
            "stale_samples_start_end_s": [[round(r[0] - t_cmd, 3), round(r[1] - t_cmd, 3)] for r in stale[:5]],
            "straddling_next_command": sum(r[0] >= t_cmd and r[0] < until <= r[1] for r in records),
            "first_new_s": round(min((r[1] for r in fresh), default=float("nan")) - t_cmd, 3)}


async def drill(url: str, reg, inflight: int, hold_s: float) -> dict:
    import httpx

    from app.registry import rollout

    records: list = []
    stop = asyncio.Event()

    async def worker(client):
        while not stop.is_set():
            records.append(await one(client, url))

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=inflight + 4)) as client:
        tasks = [asyncio.create_task(worker(client)) for _ in range(inflight)]
        await asyncio.sleep(hold_s)
        t_deploy = time.time()
        await asyncio.to_thread(rollout.deploy, reg, "acme", "math", 2)
        t_deploy_done = time.time()
        await asyncio.sleep(hold_s)
        t_rb = time.time()
        await asyncio.to_thread(reg.rollback, "acme", "math")
        t_rb_done = time.time()
        await asyncio.sleep(hold_s)
        stop.set()
        await asyncio.gather(*tasks)
    failures = [r for r in records if r[2] != 200]
    return {"requests": len(records), "in_flight": inflight, "failures": len(failures),
            "failure_samples": [r[3] for r in failures[:5]],
            "deploy_command_s": round(t_deploy_done - t_deploy, 3), "rollback_command_s": round(t_rb_done - t_rb, 3),
            "deploy_v2": switch(records, t_deploy_done, "v1", "v2", until=t_rb),
            "rollback_to_v1": switch(records, t_rb_done, "v2", "v1"),
            "answers_by_version": {v: sum(version_of(r[3]) == v for r in records) for v in ("v1", "v2")}}


async def canary(url: str, reg, n: int, share: float) -> dict:
    import httpx

    from app.registry import rollout

    await asyncio.to_thread(rollout.deploy, reg, "acme", "math", 2, share)
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=20)) as client:
        async def limited():
            async with sem:
                return await one(client, url)

        t0 = time.time()
        records = await asyncio.gather(*(limited() for _ in range(n)))
        seconds = time.time() - t0
        await asyncio.to_thread(rollout.rollback_canary, reg, "acme", "math")
        after = [await one(client, url) for _ in range(20)]
    v2 = sum(version_of(r[3]) == "v2" for r in records)
    ok = [r for r in records if r[2] == 200]
    return {"requests": n, "share_set": share, "canary_answers": v2, "observed_share": round(v2 / n, 4),
            "within_3_points": abs(v2 / n - share) <= 0.03, "failures": n - len(ok), "seconds": round(seconds, 1),
            "after_rollback_versions": [version_of(r[3]) for r in after],
            "rollback_next_request_v1": version_of(after[0][3]) == "v1" and all(version_of(r[3]) == "v1" for r in after)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--share", type=float, default=0.1)
    p.add_argument("--inflight", type=int, default=50)
    p.add_argument("--hold-s", type=float, default=6.0, help="seconds of traffic before/after each switch")
    p.add_argument("--refresh-s", type=float, default=0.0, help="registry resolver cache (adapters.refresh_s)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "registry_rollout.json"))
    args = p.parse_args()
    from ray import serve

    from app.config.common import RaySpec
    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.launch.runtime import init_ray
    from app.models.loader import resolve_model
    from app.registry.store import Registry
    from app.registry import rollout
    from app.serve.app import build_app
    from app.serve.auth import hash_key
    from app.serve.random_adapter import write_random_adapter

    tmp = Path(tempfile.mkdtemp(prefix="rollout-"))
    url_db = f"sqlite:///{tmp / 'registry.db'}"
    reg = Registry(url_db)
    base = resolve_model("tiny:llama").path
    for v in (1, 2):
        write_random_adapter(base, tmp / f"v{v}", seed=v, std=0.5, r=4, base_source="tiny:llama")
        view = reg.register_adapter("acme", "math", str(tmp / f"v{v}"))
        reg.record_eval("acme", "math", view.version, {"score": 1.0}, {"passed": True, "reason": "benchmark"})
    rollout.deploy(reg, "acme", "math", 1)
    init_ray(RaySpec(address="local", num_cpus=2))
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    cfg = load_config(None, ServeConfig, [
        "model.source=tiny:llama", "engine=hf", "adapters.kind=registry", f"adapters.registry_url={url_db}",
        f"adapters.refresh_s={args.refresh_s}", "engine_deployment.num_cpus=0.5", "ingress_deployment.num_cpus=0.1",
        "limits.max_tokens=8", "limits.max_model_len=256", "hf.max_adapters_per_replica=2",
        f"tenants=[{{name: acme, api_key_sha256: [{hash_key(KEY)}]}}]"])
    t0 = time.time()
    serve.run(build_app(cfg), name="rollout", route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    results: dict = {"engine": "hf", "model": "tiny:llama", "refresh_s": args.refresh_s, "cpu_count": os.cpu_count(),
                     "startup_s": round(time.time() - t0, 1), "run": run_info(sys.argv)}
    out = Path(args.out)
    try:
        warm = asyncio.run(_warm(url))
        results["warm_fingerprint"] = warm
        results["drill"] = asyncio.run(drill(url, reg, args.inflight, args.hold_s))
        print(json.dumps(results["drill"], indent=1), flush=True)
        results["canary"] = asyncio.run(canary(url, reg, args.requests, args.share))
        print(json.dumps(results["canary"], indent=1), flush=True)
    finally:
        out.write_text(json.dumps(results, indent=2) + "\n")
        serve.shutdown()
    d, c = results["drill"], results["canary"]
    ok = d["failures"] == 0 and c["within_3_points"] and c["rollback_next_request_v1"] and c["failures"] == 0
    print(f"deploy switch {d['deploy_v2']['switch_s']} s, rollback switch {d['rollback_to_v1']['switch_s']} s, "
          f"failures {d['failures']}; canary share "
          f"{c['observed_share']} -> {'OK' if ok else 'NOT MET'}")
    return 0 if ok else 1


def run_info(argv: list[str]) -> dict:
    """When, what command and which commit produced the numbers (the commit plus '+dirty' for uncommitted edits)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout.strip()

    dirty = "+dirty" if git("status", "--porcelain", "--", "app", "benchmarks/registry_rollout.py") else ""
    return {"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "command": " ".join(["python", "benchmarks/registry_rollout.py", *argv[1:]]),
            "commit": (git("rev-parse", "--short", "HEAD") or "unknown") + dirty}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _warm(url: str) -> str:
    import httpx

    async with httpx.AsyncClient(timeout=300) as client:
        for _ in range(3):
            r = await one(client, url)
        return r[3]


if __name__ == "__main__":
    sys.exit(main())
