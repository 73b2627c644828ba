"""Noisy neighbour (issue 20): tenant B's latency alone vs while tenant A floods at 10x its concurrency cap.

Run through `python benchmarks/serve_load.py --phases noisy --reps 3` (this module holds the phase). Tenant B sends
streaming requests open-loop at a steady rate (``--b-rate`` per second, ``--b-requests`` in all, evenly spaced: B's
load does not grow when the server gets faster or slower, and the rate is chosen so that B alone leaves the machine
idle most of the time; B's own CPU is measured). Tenant A runs 10 x its cap of closed-loop clients in its own process
(each refused client waits as the openai client does: ``retry-after-ms``, else Retry-After; then tries again), so A holds up to its cap of admitted streams, starts at
most its request rate (``tenants[].max_requests_per_s``, when set) and sends the rest as 429s; A's offered and
admitted requests per second are recorded. Each repetition measures B alone and then B with A's flood, back to back in the same app, so the p99
ratio is per repetition. Once, for where B's extra latency comes from: A at its cap only (admitted work; no 429 unless A also has a rate limit) and
A's refused traffic only (the same clients with a wrong key: 401s). Every phase records CPU cores per process (B's
client, A's generator, Serve proxy, ingress, engine, the rest of the machine), time to first token and the gaps
between content events. Both tenants' clients use aiohttp (cheaper per request than httpx): client and server share
the machine's 2 cores, and a load generator's own CPU is not what is being measured.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
from collections import Counter

FLOOD_FACTOR = 10


def _load_spec(kind: str, cap: int, keys: dict) -> tuple[int, str]:
    """(clients, API key) of tenant A's load generator for ``kind``."""
    return {"flood": (cap * FLOOD_FACTOR, keys["noisy"]), "at_cap": (cap, keys["noisy"]),
            "rejected": (cap * (FLOOD_FACTOR - 1), "sk-not-a-key")}[kind]


async def sse_request(session, url: str, key: str, payload: bytes, parse: bool = True) -> dict:
    """One streaming POST: status, whether it ended ([DONE] / a 4xx error body), time to first token, the arrival time
    of every content event (``parse``; else only [DONE] is looked for), Retry-After of a refusal."""
    t0 = time.perf_counter()
    rec = {"status": None, "terminated": False, "error_event": False, "ttft_s": None, "content_at": []}
    try:
        async with session.post(url, data=payload, headers={"Authorization": f"Bearer {key}",
                                                              "Content-Type": "application/json"}) as r:
            rec["status"] = r.status
            if r.status != 200:
                body = json.loads(await r.read())
                rec["terminated"] = "error" in body
                rec["retry_after"] = r.headers.get("Retry-After")
                rec["retry_after_ms"] = r.headers.get("retry-after-ms")
            else:
                async for line in r.content:
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:].strip()
                    if data == b"[DONE]":
                        rec["terminated"] = True
                        break
                    if not parse:
                        continue
                    event = json.loads(data)
                    if "error" in event:
                        rec["error_event"] = True
                    elif event.get("choices") and event["choices"][0]["delta"].get("content"):
                        rec["content_at"].append(time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - a transport failure is a failure; recorded
        rec["exception"] = f"{type(exc).__name__}: {exc}"
    rec["latency_s"] = time.perf_counter() - t0
    if rec["content_at"]:
        rec["ttft_s"] = rec["content_at"][0]
    return rec


def _session(limit: int):
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit),
                                 timeout=aiohttp.ClientTimeout(total=900, connect=60))


async def tenant_a_load(base: str, kind: str, cap: int, keys: dict, max_tokens: int, stopped) -> dict:
    """Tenant A's closed-loop clients until ``stopped()``; a 429/401 client waits as the openai client does
    (``retry-after-ms`` when sent, else Retry-After; 1 s for a 401) and tries again."""
    from serve_load import valid_body

    clients, key = _load_spec(kind, cap, keys)
    statuses: Counter = Counter()
    url = base + "/v1/chat/completions"

    async def worker(session):
        i = 0
        while not stopped():
            i += 1
            rec = await sse_request(session, url, key, json.dumps(valid_body(i, "noisy", max_tokens)).encode(), parse=False)
            statuses[str(rec["status"]) if "exception" not in rec else "exception"] += 1
            if rec["status"] in (401, 429):  # the openai client's rule: retry-after-ms first, then Retry-After
                ms = rec.get("retry_after_ms")
                await asyncio.sleep(float(ms) / 1000 if ms else float(rec.get("retry_after") or 1))

    t0 = time.perf_counter()
    async with _session(clients + 5) as session:
        await asyncio.gather(*(worker(session) for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {"kind": kind, "clients": clients, "statuses": dict(statuses), "wall_s": round(wall, 1),
            "offered_per_s": round(sum(statuses.values()) / wall, 1), "admitted_per_s": round(statuses.get("200", 0) / wall, 1)}


def _load_process(base, kind, cap, keys, max_tokens, stop_event, results):
    results.put(asyncio.run(tenant_a_load(base, kind, cap, keys, max_tokens, stop_event.is_set)))


async def tenant_b_open_loop(base: str, key: str, rate: float, n: int, max_tokens: int) -> tuple[list[dict], float]:
    """``n`` streaming requests of tenant B sent at ``rate`` per second, evenly spaced, whatever the answers do;
    returns the records and the 99th percentile of how late a send was against its schedule (client saturation)."""
    from serve_load import valid_body

    url, tasks, late = base + "/v1/chat/completions", [], []
    async with _session(0) as session:
        t0 = time.perf_counter()
        for i in range(n):
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            late.append(time.perf_counter() - due)
            tasks.append(asyncio.ensure_future(sse_request(session, url, key, json.dumps(valid_body(i, "t1", max_tokens)).encode())))
        recs = await asyncio.gather(*tasks)
    return recs, sorted(late)[int(0.99 * (len(late) - 1))]


class CpuMeter:
    """CPU seconds per named process between ``start()`` and ``stop()``, plus the whole machine's busy seconds.
    The processes named in ``with_children`` count their live descendants too (the vLLM replica's engine-core
    process, where its model runs); the others do not (the driver's descendants are the whole Ray cluster)."""

    def __init__(self, pids: dict[str, int], with_children: tuple[str, ...] = ("engine",)):
        self.pids, self.with_children = pids, with_children

    def _read(self) -> dict:
        import psutil

        out = {}
        for name, pid in self.pids.items():
            try:
                proc = psutil.Process(pid)
                procs = [proc, *proc.children(recursive=True)] if name in self.with_children else [proc]
                out[name] = 0.0
                for p in procs:
                    try:
                        t = p.cpu_times()
                        out[name] += t.user + t.system
                    except psutil.Error:
                        pass
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
        cores = {k: round(v / wall, 3) for k, v in used.items()}
        cores["server"] = round(sum(cores.get(k, 0.0) for k in ("proxy", "ingress", "engine")), 3)
        return {"wall_s": round(wall, 2), "cores": cores}


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


def stream_stats(recs: list[dict]) -> dict:
    """Latency, time to first token and the gaps between a stream's content events (what chunking costs a reader)."""
    from serve_load import quantiles

    ok = [r for r in recs if r["status"] == 200 and r["terminated"] is True and not r["error_event"] and "exception" not in r]
    gaps = [b - a for r in ok for a, b in zip(r["content_at"], r["content_at"][1:])]
    lat, ttft, gap = quantiles([r["latency_s"] for r in ok]), quantiles([r["ttft_s"] for r in ok if r["ttft_s"] is not None]), quantiles(gaps)
    return {"b_requests": len(recs), "b_ok": len(ok), "b_failures": len(recs) - len(ok),
            "failure_examples": [r for r in recs if r not in ok][:3], **lat,
            "ttft_p50_s": ttft["p50_s"], "ttft_p99_s": ttft["p99_s"], "gap_p50_s": gap["p50_s"], "gap_p99_s": gap["p99_s"],
            "gap_max_s": round(max(gaps), 3) if gaps else None,
            "content_events_per_request": round(sum(len(r["content_at"]) for r in ok) / max(1, len(ok)), 2)}


async def b_phase(base: str, app_pids: dict, rate: float, n: int, max_tokens: int, load: str | None, cap: int,
                  keys: dict) -> dict:
    """Tenant B (open-loop, ``rate`` per second, ``n`` requests), with tenant A's ``load`` running (None: alone)."""
    proc = stop_event = results = None
    pids = dict(app_pids)
    if load:
        ctx = multiprocessing.get_context("spawn")
        stop_event, results = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=_load_process, args=(base, load, cap, keys, max_tokens, stop_event, results), daemon=True)
        proc.start()
        pids["a_generator"] = proc.pid
        await asyncio.sleep(3.0)  # A's load is at full pressure (its process started) before B starts
    meter = CpuMeter({"b_client": os.getpid(), **pids})
    started = time.strftime("%H:%M:%S", time.gmtime())
    meter.start()
    recs, late_p99 = await tenant_b_open_loop(base, keys["t1"], rate, n, max_tokens)
    cpu = meter.stop()
    a = None
    if proc is not None:
        stop_event.set()
        a = await asyncio.to_thread(results.get, True, 120)
        proc.join(30)
    return {"load": load or "alone", "utc": f"{started}-{time.strftime('%H:%M:%S', time.gmtime())}", "b_rate": rate,
            "b_send_late_p99_s": round(late_p99, 4), **stream_stats(recs), "a": a, "cpu": cpu}


async def run_noisy(base: str, pids: dict[str, int], max_tokens: int, rate: float, n: int, reps: int, cap: int,
                    keys: dict, decompose: tuple[str, ...] = ("at_cap", "rejected")) -> dict:
    """``reps`` x (B alone, B + flood), then (once each) the decomposition phases named in ``decompose`` ("flood",
    "at_cap", "rejected"; with ``reps`` 0 they run on their own); ratios are flood p99 / alone p99.
    ``pids``: the server processes to meter (``server_pids(app)``, called outside the event loop)."""
    pairs = []
    for _ in range(reps):
        alone = await b_phase(base, pids, rate, n, max_tokens, None, cap, keys)
        flood = await b_phase(base, pids, rate, n, max_tokens, "flood", cap, keys)
        pairs.append({"alone": alone, "flood": flood, "p99_ratio": round(flood["p99_s"] / alone["p99_s"], 3),
                      "p50_ratio": round(flood["p50_s"] / alone["p50_s"], 3)})
    out = {"tenant_a_cap": cap, "tenant_a_clients": cap * FLOOD_FACTOR, "tenant_b_rate_per_s": rate,
           "tenant_b_requests": n, "reps": pairs, "p99_ratios": [p["p99_ratio"] for p in pairs],
           "max_p99_ratio": max((p["p99_ratio"] for p in pairs), default=None),
           "b_alone_cores": {"server": [p["alone"]["cpu"]["cores"]["server"] for p in pairs],
                             "b_client": [p["alone"]["cpu"]["cores"]["b_client"] for p in pairs],
                             "machine": [p["alone"]["cpu"]["cores"]["machine"] for p in pairs]}}
    names = {"flood": "a_flood", "at_cap": "a_at_cap", "rejected": "a_rejected_only"}
    if decompose:
        out["decomposition"] = {names[kind]: await b_phase(base, pids, rate, n, max_tokens, kind, cap, keys) for kind in decompose}
    return out
