"""Noisy neighbour (issue 20): tenant B's latency alone vs while tenant A floods at 10x its concurrency cap.

Run through `python benchmarks/serve_load.py --phases noisy --reps 3` (this module holds the phase). Each repetition
measures B alone and then B with A's flood, back to back in the same app, so the ratio is per repetition. A's load
generator runs in its own process, so B's client event loop does not also drive A's 40 clients. Once, for the
decomposition of where B's extra latency comes from: A at its cap only (4 clients: admitted work, no 429), A's rejected
traffic only (36 clients with a wrong key, each waiting 1 s after its 401 like a rejected client honouring Retry-After),
and the flood generated inside B's own process (how sessions before measured it). Every phase records CPU seconds per
process (B's client, A's generator, Serve proxy, ingress, engine, the rest of the machine): client and server share
the machine's cores.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections import Counter

FLOOD_FACTOR = 10


def _load_spec(kind: str, cap: int, keys: dict) -> tuple[int, str]:
    """(clients, API key) of tenant A's load generator for ``kind``."""
    return {"flood": (cap * FLOOD_FACTOR, keys["noisy"]), "at_cap": (cap, keys["noisy"]),
            "rejected": (cap * (FLOOD_FACTOR - 1), "sk-not-a-key")}[kind]


async def tenant_a_load(base: str, kind: str, cap: int, keys: dict, max_tokens: int, stopped) -> dict:
    """Tenant A's closed-loop clients until ``stopped()``; a 429/401 client waits Retry-After (1 s) and tries again."""
    import httpx

    from serve_load import stream_one, valid_body

    clients, key = _load_spec(kind, cap, keys)
    statuses: Counter = Counter()
    url = base + "/v1/chat/completions"

    async def worker(client):
        i = 0
        while not stopped():
            i += 1
            rec = await stream_one(client, url, key, json.dumps(valid_body(i, "noisy", max_tokens)).encode())
            statuses[str(rec["status"]) if "exception" not in rec else "exception"] += 1
            if rec["status"] in (401, 429):
                await asyncio.sleep(float(rec.get("retry_after") or 1))

    async with httpx.AsyncClient(timeout=httpx.Timeout(900, connect=60), limits=httpx.Limits(max_connections=clients + 5)) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return {"kind": kind, "clients": clients, "statuses": dict(statuses)}


def _load_process(base, kind, cap, keys, max_tokens, stop_event, results):
    results.put(asyncio.run(tenant_a_load(base, kind, cap, keys, max_tokens, stop_event.is_set)))


class CpuMeter:
    """CPU seconds per named process between ``start()`` and ``stop()``, plus the whole machine's busy seconds."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids

    def _read(self) -> dict:
        import psutil

        out = {}
        for name, pid in self.pids.items():
            try:
                t = psutil.Process(pid).cpu_times()
                out[name] = t.user + t.system
            except psutil.Error:
                out[name] = 0.0
        ct = psutil.cpu_times()  # guest time is already inside user time
        out["machine"] = sum(ct) - ct.idle - sum(getattr(ct, k, 0.0) for k in ("iowait", "guest", "guest_nice"))
        return out

    def start(self):
        self.t0, self.c0 = time.perf_counter(), self._read()

    def stop(self) -> dict:
        wall, c1 = time.perf_counter() - self.t0, self._read()
        used = {k: c1[k] - self.c0.get(k, 0.0) for k in c1}
        used["rest_of_machine"] = used["machine"] - sum(v for k, v in used.items() if k != "machine")
        return {"wall_s": round(wall, 2), "cores": {k: round(v / wall, 3) for k, v in used.items()}}


def server_pids(app: str) -> dict[str, int]:
    """pids of the Serve proxy, the ingress and the engine replica of ``app``."""
    import psutil
    from ray import serve

    pids = {"ingress": serve.get_deployment_handle("Ingress", app).replica_stats.remote().result()["pid"],
            "engine": serve.get_deployment_handle("Engine", app).stats.remote().result()["pid"]}
    for p in psutil.process_iter(["pid", "cmdline"]):
        if any("ProxyActor" in part for part in (p.info["cmdline"] or [])):
            pids["proxy"] = p.info["pid"]
    return pids


async def b_phase(base: str, app_pids: dict, conc: int, n: int, max_tokens: int, load: str | None, cap: int, keys: dict,
                  in_process: bool = False) -> dict:
    """Tenant B (``conc`` closed-loop clients, ``n`` requests), with tenant A's ``load`` running (None: alone)."""
    from serve_load import quantiles, run_tenant

    proc = stop_event = results = inproc_task = None
    stopped = [False]
    pids = dict(app_pids)
    if load and not in_process:
        ctx = multiprocessing.get_context("spawn")
        stop_event, results = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=_load_process, args=(base, load, cap, keys, max_tokens, stop_event, results), daemon=True)
        proc.start()
        pids["a_generator"] = proc.pid
    elif load:
        inproc_task = asyncio.ensure_future(tenant_a_load(base, load, cap, keys, max_tokens, lambda: stopped[0]))
    if load:
        await asyncio.sleep(3.0)  # A's load is at full pressure (its process started) before B starts
    import os

    meter = CpuMeter({"b_client": os.getpid(), **pids})
    meter.start()
    recs = await run_tenant(base, "t1", conc, None, n, max_tokens)
    cpu = meter.stop()
    a = None
    if proc is not None:
        stop_event.set()
        a = await asyncio.to_thread(results.get, True, 120)
        proc.join(30)
    elif inproc_task is not None:
        stopped[0] = True
        a = await inproc_task
    lat = quantiles([r["latency_s"] for r in recs])
    ttft = quantiles([r["ttft_s"] for r in recs if r["ttft_s"] is not None])
    return {"load": load or "alone", "a_in_b_process": in_process if load else None, "b_requests": len(recs),
            "b_ok": sum(r["status"] == 200 and r["terminated"] is True for r in recs), **lat,
            "ttft_p50_s": ttft["p50_s"], "ttft_p99_s": ttft["p99_s"], "a": a, "cpu": cpu}


async def run_noisy(base: str, pids: dict[str, int], max_tokens: int, conc: int, n: int, reps: int, cap: int, keys: dict,
                    decompose: bool = True) -> dict:
    """``reps`` × (B alone, B + flood), then (once) the decomposition phases; ratios are flood p99 / alone p99.
    ``pids``: the server processes to meter (``server_pids(app)``, called outside the event loop)."""
    pairs = []
    for _ in range(reps):
        alone = await b_phase(base, pids, conc, n, max_tokens, None, cap, keys)
        flood = await b_phase(base, pids, conc, n, max_tokens, "flood", cap, keys)
        pairs.append({"alone": alone, "flood": flood, "p99_ratio": round(flood["p99_s"] / alone["p99_s"], 3),
                      "p50_ratio": round(flood["p50_s"] / alone["p50_s"], 3)})
    out = {"tenant_a_cap": cap, "tenant_a_clients": cap * FLOOD_FACTOR, "tenant_b_concurrency": conc,
           "tenant_b_requests": n, "reps": pairs, "p99_ratios": [p["p99_ratio"] for p in pairs],
           "max_p99_ratio": max(p["p99_ratio"] for p in pairs)}
    if decompose:
        out["decomposition"] = {
            "alone": await b_phase(base, pids, conc, n, max_tokens, None, cap, keys),
            "a_at_cap": await b_phase(base, pids, conc, n, max_tokens, "at_cap", cap, keys),
            "a_rejected_only": await b_phase(base, pids, conc, n, max_tokens, "rejected", cap, keys),
            "flood_in_b_process": await b_phase(base, pids, conc, n, max_tokens, "flood", cap, keys, in_process=True),
        }
    return out
