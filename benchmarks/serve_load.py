"""Serve under abuse and load (issue 20), through real HTTP (Serve proxy → ingress → engine), streaming clients.

Phases (each writes into benchmarks/results/serve_load[_<engine>].json as it finishes):
  mixed     N concurrent streaming chat requests over 4 adapters and 2 tenants; 10% malformed or poisoned (nested JSON,
            out-of-range seed, 5 stop strings, empty message, model name with a newline, broken JSON, temperature -1),
            5% cancelled by the client after the first token. Checks: 0 failures among the valid requests, every
            stream terminated ([DONE] or a 4xx body), the engine stopped every cancelled generation; p50/p99 latency and
            completion tokens/s of the valid requests.
  clean     the same valid requests alone (without the bad 15%); the ratios mixed/clean are printed.
  alternate --alternate-rounds rounds of clean then mixed on the same app (the reverse of mixed, clean): whether the
            mixed/clean gap is a cost of the bad 15% or of which phase runs first.
  noisy     tenant B (uncapped) open-loop at a steady rate alone, then again while tenant A (cap C in flight, --noisy-rate
            requests/s) floods at 10 x C concurrent clients (each honouring Retry-After), --reps times; B's p99 with the flood / alone (goal <= 1.5),
            plus a decomposition of B's extra latency and CPU per process (benchmarks/serve_noisy.py).
  interval  B alone (as in noisy) on an app per --interval-sweep value of hf.stream_interval_s: what coalescing tokens
            into fewer chunks saves in CPU and costs in time to first token and gaps between chunks.
  autoscale a second app whose engine autoscales 1..2 replicas (target 2 ongoing, up/down delays of a few seconds):
            the replica count is sampled under load and after it (grows, then shrinks).
  soak      a steady request rate for --soak-s seconds; errors, and RSS of the engine and ingress replicas at start/end.

    python benchmarks/serve_load.py [--engine hf|vllm] [--model tiny:llama] [--requests 200] [--max-tokens 16]
                                    [--phases mixed,clean,noisy,interval,autoscale,soak] [--soak-s 120] [--soak-rps 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from local_services import start_serve_http  # benchmarks/ is the script's folder


KEYS = {"t0": "sk-load-t0", "t1": "sk-load-t1", "noisy": "sk-load-noisy"}
ADAPTERS = {"t0": ["a0", "a1"], "t1": ["a2", "a3"], "noisy": ["a4"]}
NOISY_CAP = 4
# tenant A's request rate (requests/s, token bucket, burst 4): its 40 clients (10 x its cap of 4 in flight, each waiting
# Retry-After = 1 s when refused) offer ~40 requests/s, 10 x this rate too; B (uncapped) sends 5/s
NOISY_RATE = 4.0
TOPICS = ["the sea", "a mountain", "a city at night", "an old library", "the first snow", "a train journey"]
BAD_KINDS = ["seed", "nested", "stop", "empty", "newline", "badjson", "temperature"]


def quantiles(xs: list[float]) -> dict:
    if not xs:
        return {"p50_s": None, "p99_s": None}
    q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else [xs[0]] * 99
    return {"p50_s": round(q[49], 3), "p99_s": round(q[98], 3)}


def valid_body(i: int, tenant: str, max_tokens: int) -> dict:
    # run_mixed alternates tenants by i % 2, so the adapter goes by i // 2: every adapter of the tenant gets requests
    return {"model": ADAPTERS[tenant][(i // 2) % len(ADAPTERS[tenant])], "stream": True, "max_tokens": max_tokens,
            "temperature": 0, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Write a short story about {TOPICS[i % len(TOPICS)]}."}]}


def bad_request(i: int, tenant: str, max_tokens: int) -> tuple[bytes, str]:
    kind = BAD_KINDS[i % len(BAD_KINDS)]
    body = valid_body(i, tenant, max_tokens)
    if kind == "nested":
        return b"[" * 5000 + b"]" * 5000, kind
    if kind == "badjson":
        return b'{"model": "a0", "messages": [', kind
    body.update({"seed": {"seed": 2**70}, "stop": {"stop": ["a", "b", "c", "d", "e"]}, "temperature": {"temperature": -1},
                 "newline": {"model": body["model"] + "\n"}, "empty": {"messages": [{"role": "user", "content": ""}]}}[kind])
    return json.dumps(body).encode(), kind


async def stream_one(client, url: str, key: str, payload: bytes, cancel_after: int | None = None) -> dict:
    """One streaming request: status, whether it ended ([DONE] / an error body / the client leaving), latency, tokens."""
    t0 = time.perf_counter()
    rec = {"status": None, "terminated": False, "error_event": False, "tokens": 0, "ttft_s": None}
    try:
        async with client.stream("POST", url, content=payload, headers={"Authorization": f"Bearer {key}",
                                                                         "Content-Type": "application/json"}) as r:
            rec["status"] = r.status_code
            if r.status_code != 200:
                body = json.loads(await r.aread())
                rec["terminated"] = "error" in body
                rec["error_code"] = body.get("error", {}).get("code")
                rec["retry_after"] = r.headers.get("retry-after")
            else:
                seen = 0
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    if data == "[DONE]":
                        rec["terminated"] = True
                        break
                    event = json.loads(data)
                    if "error" in event:
                        rec["error_event"] = True
                        continue
                    if event.get("usage"):
                        rec["tokens"] = event["usage"]["completion_tokens"]
                    if event.get("choices") and event["choices"][0]["delta"].get("content"):
                        seen += 1
                        if rec["ttft_s"] is None:
                            rec["ttft_s"] = time.perf_counter() - t0
                        if cancel_after is not None and seen >= cancel_after:
                            rec["terminated"] = "client"  # the client leaves mid-stream
                            break
    except Exception as exc:  # noqa: BLE001 - a transport failure is a failure; recorded
        rec["exception"] = f"{type(exc).__name__}: {exc}"
    rec["latency_s"] = time.perf_counter() - t0
    return rec


async def run_mixed(base: str, n: int, max_tokens: int, bad: bool) -> dict:
    """n concurrent requests; with ``bad``: 10% malformed/poisoned, 5% cancelled after the first token."""
    import httpx

    url = base + "/v1/chat/completions"
    n_bad, n_cancel = (n // 10, n // 20) if bad else (0, 0)
    plan = []
    for i in range(n):
        tenant = "t0" if i % 2 == 0 else "t1"
        if i % 10 == 3 and n_bad:
            payload, kind = bad_request(i, tenant, max_tokens)
            plan.append(("bad", kind, tenant, payload, None))
            n_bad -= 1
        elif i % 20 == 7 and n_cancel:
            plan.append(("cancel", "cancel", tenant, json.dumps(valid_body(i, tenant, max_tokens)).encode(), 1))
            n_cancel -= 1
        else:
            plan.append(("valid", "valid", tenant, json.dumps(valid_body(i, tenant, max_tokens)).encode(), None))
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(900, connect=60), limits=limits) as client:
        t0 = time.perf_counter()
        recs = await asyncio.gather(*(stream_one(client, url, KEYS[t], p, c) for _, _, t, p, c in plan))
        wall = time.perf_counter() - t0
    for (role, kind, *_), rec in zip(plan, recs):
        rec["role"], rec["kind"] = role, kind
    valid = [r for r in recs if r["role"] == "valid"]
    failures = [r for r in valid if r["status"] != 200 or r["terminated"] is not True or r["error_event"] or "exception" in r]
    bads = [r for r in recs if r["role"] == "bad"]
    tokens = sum(r["tokens"] for r in valid)
    return {
        "requests": n, "valid": len(valid), "bad": len(bads), "cancelled": sum(r["role"] == "cancel" for r in recs),
        "valid_failures": len(failures), "failure_examples": failures[:3],
        "all_terminated": all(r["terminated"] for r in recs),
        "bad_statuses": {k: sorted({r["status"] for r in bads if r["kind"] == k}) for k in BAD_KINDS if any(r["kind"] == k for r in bads)},
        "bad_4xx": all(r["status"] is not None and 400 <= r["status"] < 500 for r in bads),
        "wall_s": round(wall, 2), "completion_tokens": tokens, "tokens_per_s": round(tokens / wall, 2),
        **quantiles([r["latency_s"] for r in valid]),
        "ttft_p50_s": quantiles([r["ttft_s"] for r in valid if r["ttft_s"] is not None])["p50_s"],
    }


async def run_tenant(base: str, tenant: str, concurrency: int, until: float | None, n: int | None, max_tokens: int) -> list[dict]:
    """``concurrency`` closed-loop clients of ``tenant``: n requests in all, or until time ``until``."""
    import httpx

    url, recs, count = base + "/v1/chat/completions", [], [0]

    async def worker(client, w):
        while (until is None or time.perf_counter() < until) and (n is None or count[0] < n):
            count[0] += 1
            rec = await stream_one(client, url, KEYS[tenant], json.dumps(valid_body(count[0], tenant, max_tokens)).encode())
            recs.append(rec)

    async with httpx.AsyncClient(timeout=httpx.Timeout(900, connect=60),
                                 limits=httpx.Limits(max_connections=concurrency + 5)) as client:
        await asyncio.gather(*(worker(client, w) for w in range(concurrency)))
    return recs


def replica_counts(app: str) -> dict:
    from ray import serve

    status = serve.status().applications[app].deployments
    return {name: sum(n for state, n in d.replica_states.items() if str(state).endswith("RUNNING")) for name, d in status.items()}


def run_autoscale(base: str, app: str, max_tokens: int, load_s: float) -> dict:
    samples, stop = [], threading.Event()

    def sample():
        t0 = time.perf_counter()
        while not stop.is_set():
            samples.append((round(time.perf_counter() - t0, 1), replica_counts(app)["Engine"]))
            time.sleep(1.0)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t_load = time.perf_counter()
    recs = asyncio.run(run_tenant(base, "t0", 12, time.perf_counter() + load_s, None, max_tokens))
    load_end = time.perf_counter() - t_load
    deadline = time.perf_counter() + 90
    while time.perf_counter() < deadline and (not samples or samples[-1][1] > 1 or time.perf_counter() - t_load < load_end + 3):
        time.sleep(1.0)
    stop.set()
    th.join()
    peak = max(n for _, n in samples)
    return {"load_s": round(load_end, 1), "requests": len(recs), "errors": sum(r["status"] != 200 for r in recs),
            "replicas_start": samples[0][1], "replicas_peak": peak, "replicas_end": samples[-1][1],
            "grew": peak > samples[0][1], "shrank": samples[-1][1] < peak, "timeline": samples}


def run_soak(base: str, app: str, seconds: float, rps: float, max_tokens: int, sample_s: float = 60.0) -> dict:
    """``rps`` steady streaming requests per second for ``seconds``; RSS of the engine and ingress replicas (and of the
    Serve proxy) at the start, every ``sample_s`` and at the end."""
    import psutil
    from ray import serve

    engine, ingress = serve.get_deployment_handle("Engine", app), serve.get_deployment_handle("Ingress", app)
    proxy = next((p for p in psutil.process_iter(["pid", "cmdline"]) if any("ProxyActor" in part for part in (p.info["cmdline"] or []))), None)

    def rss() -> dict:
        out = {"engine": engine.stats.remote().result()["rss_mib"], "ingress": ingress.replica_stats.remote().result()["rss_mib"]}
        try:
            out["proxy"] = round(proxy.memory_info().rss / 2**20, 1)
        except (AttributeError, psutil.Error):  # no proxy found, or it is gone
            out["proxy"] = None
        return out

    timeline, stop = [], threading.Event()

    def sample():
        t0 = time.perf_counter()
        while not stop.wait(sample_s):
            timeline.append({"t_s": round(time.perf_counter() - t0), **rss()})

    start = {"engine": engine.stats.remote().result(), "ingress": ingress.replica_stats.remote().result()}
    proxy_start = rss().get("proxy")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    async def steady():
        import httpx

        url, tasks = base + "/v1/chat/completions", []
        async with httpx.AsyncClient(timeout=httpx.Timeout(900, connect=60), limits=httpx.Limits(max_connections=200)) as client:
            t0, i = time.perf_counter(), 0
            while time.perf_counter() - t0 < seconds:
                tenant = "t0" if i % 2 == 0 else "t1"
                tasks.append(asyncio.ensure_future(stream_one(client, url, KEYS[tenant], json.dumps(valid_body(i, tenant, max_tokens)).encode())))
                i += 1
                await asyncio.sleep(max(0.0, t0 + i / rps - time.perf_counter()))
            return await asyncio.gather(*tasks)

    recs = asyncio.run(steady())
    stop.set()
    sampler.join()
    end = {"engine": engine.stats.remote().result(), "ingress": ingress.replica_stats.remote().result()}
    growth = {k: round(end[k]["rss_mib"] / start[k]["rss_mib"] - 1, 4) for k in start}
    proxy_end = rss().get("proxy")
    return {"seconds": seconds, "rps": rps, "requests": len(recs),
            "errors": sum(r["status"] != 200 or r["terminated"] is not True or r["error_event"] or "exception" in r for r in recs),
            "statuses": {str(k): sum(r["status"] == k for r in recs) for k in sorted({r["status"] for r in recs}, key=str)},
            "rss_mib_start": {k: v["rss_mib"] for k, v in start.items()}, "rss_mib_end": {k: v["rss_mib"] for k, v in end.items()},
            "same_pids": all(start[k]["pid"] == end[k]["pid"] for k in start), "rss_growth": growth,
            "rss_growth_ok": all(g <= 0.10 for g in growth.values()),
            "proxy_rss_mib_start_end": [proxy_start, proxy_end], "rss_mib_timeline": timeline,
            "loop_threads": {"engine": end["engine"].get("loop_thread"), "ingress": end["ingress"].get("loop_thread")},
            **quantiles([r["latency_s"] for r in recs]),
            "ttft_p50_s": quantiles([r["ttft_s"] for r in recs if r["ttft_s"] is not None])["p50_s"],
            "ttft_p99_s": quantiles([r["ttft_s"] for r in recs if r["ttft_s"] is not None])["p99_s"]}


def app_commit() -> str:
    """The commit of the app package this run imported (PYTHONPATH may point at another checkout than the script)."""
    import subprocess

    import app

    where = Path(app.__file__).resolve().parent
    sha = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--", "."], capture_output=True, text=True).stdout.strip()
    return f"{sha}{'+dirty' if dirty else ''} ({where})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    ap.add_argument("--model", default="tiny:llama", help="model.source (tiny:llama, bundled:smollm2-135m-instruct)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--phases", default="mixed,clean,noisy,autoscale,soak")
    ap.add_argument("--b-rate", type=float, default=5.0, help="noisy/interval: tenant B's open-loop requests per second")
    ap.add_argument("--b-requests", type=int, default=150, help="noisy: tenant B's requests per phase")
    ap.add_argument("--interval-sweep", default="0,0.1", help="interval: hf.stream_interval_s values (besides the app's own)")
    ap.add_argument("--sweep-requests", type=int, default=75, help="interval: tenant B's requests per value")
    ap.add_argument("--reps", type=int, default=3, help="noisy: (alone, flood) pairs measured back to back")
    ap.add_argument("--no-decompose", action="store_true", help="noisy: skip the decomposition phases")
    ap.add_argument("--decompose", default="at_cap,rejected",
                    help="noisy: which decomposition phases (flood, at_cap, rejected; --reps 0: only these)")
    ap.add_argument("--noisy-cap", type=int, default=NOISY_CAP, help="tenant A's max_concurrent_requests (it floods with 10x)")
    ap.add_argument("--noisy-rate", type=float, default=NOISY_RATE,
                    help="tenant A's max_requests_per_s (0: no rate limit, only its concurrency cap)")
    ap.add_argument("--also-noisy", default="", metavar="CAP:RATE[,CAP:RATE]",
                    help="noisy: after the pairs with --noisy-cap/--noisy-rate, --reps pairs more per extra tenant A "
                         "'noisy_c<CAP>' with that cap and rate (same app, no decomposition) -> results 'noisy_cap<CAP>'")
    ap.add_argument("--alternate-rounds", type=int, default=3, help="alternate: (clean, mixed) rounds on one app")
    ap.add_argument("--autoscale-load-s", type=float, default=30)
    ap.add_argument("--soak-s", type=float, default=120)
    ap.add_argument("--soak-rps", type=float, default=4)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None)
    ap.add_argument("--split", action="store_true", help="each phase to its own file: <out stem>_<phase>.json")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    phases = args.phases.split(",")
    # flooding tenants: (tenant, cap, requests/s or 0, results key); extra ones only take part in the noisy phase
    floods = [("noisy", args.noisy_cap, args.noisy_rate, "noisy")]
    for spec in (v for v in args.also_noisy.split(",") if v):
        cap, rate = int(spec.split(":")[0]), float(spec.split(":")[1])
        KEYS[f"noisy_c{cap}"], ADAPTERS[f"noisy_c{cap}"] = f"sk-load-noisy-c{cap}", ADAPTERS["noisy"]
        floods.append((f"noisy_c{cap}", cap, rate, f"noisy_cap{cap}"))
    if "noisy" in phases:
        phases += [key for *_, key in floods[1:]]
    limits = {t: (cap, rate) for t, cap, rate, _ in floods}

    from ray import serve

    from app.config.common import RaySpec
    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.launch.runtime import init_ray
    from app.models.loader import resolve_model
    from app.serve.app import build_app
    from app.serve.auth import hash_key
    from app.serve.random_adapter import write_random_adapter

    base_model = resolve_model(args.model)
    root = Path(tempfile.mkdtemp(prefix="rayalign-load-adapters-"))
    for tenant, names in ADAPTERS.items():
        for i, name in enumerate(names):
            write_random_adapter(base_model.path, root / tenant / name, seed=200 + int(name[1:]), r=8, std=0.05)
    init_ray(RaySpec(address="local", num_cpus=2))
    base = start_serve_http()
    tenants = ", ".join(
        f"{{name: {t}, api_key_sha256: [{hash_key(k)}]" + (f", max_concurrent_requests: {limits[t][0]}" if t in limits else "")
        + (f", max_requests_per_s: {limits[t][1]}" if t in limits and limits[t][1] > 0 else "") + "}"
        for t, k in KEYS.items())
    common = [f"model.source={args.model}", f"engine={args.engine}", f"adapters.root={root}", f"tenants=[{tenants}]",
              "limits.max_model_len=512", "limits.max_tokens=128", "engine_deployment.num_cpus=1",
              "ingress_deployment.num_cpus=0.1", "ingress_deployment.max_replicas=1", "hf.max_adapters_per_replica=5",
              "hf.max_batch_size=16", "vllm.max_loras=4", "vllm.max_cpu_loras=5", "vllm.max_lora_rank=8",
              "vllm.max_num_seqs=32", "vllm.dtype=float32", *args.overrides]
    out = Path(args.out or Path(__file__).parent / "results" / f"serve_load{'' if args.engine == 'hf' else '_' + args.engine}.json")
    results: dict = {"engine": args.engine, "model": args.model, "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
                     "config": vars(args), "cpu_count": os.cpu_count(), "app_commit": app_commit(),
                     "ray_serve_env": {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")}}

    head = dict(results)

    def save(complete=False):
        if not args.split:
            out.write_text(json.dumps(results | {"complete": complete}, indent=2, default=str))
            return
        for phase in (p for p in phases if p in results):
            path = out.with_name(f"{out.stem}_{phase}.json")
            path.write_text(json.dumps(head | {phase: results[phase], "complete": True}, indent=2, default=str))

    t0 = time.perf_counter()
    app = "load"
    serve.run(build_app(load_config(None, ServeConfig, [*common, "engine_deployment.max_replicas=1"])), name=app,
              route_prefix="/", blocking=False)
    results["startup_s"] = head["startup_s"] = round(time.perf_counter() - t0, 1)
    print(f"{args.engine} app up in {results['startup_s']:.0f}s", flush=True)
    asyncio.run(run_mixed(base, 10, 4, bad=False))  # warm-up: adapters loaded before timing
    for tenant, *_ in floods:  # and the noisy tenants' adapters (else their first flood loads them)
        asyncio.run(run_tenant(base, tenant, 1, None, 2, 4))
    engine = serve.get_deployment_handle("Engine", app)
    if "mixed" in phases:
        before = engine.stats.remote().result()["cancelled"]
        res = asyncio.run(run_mixed(base, args.requests, args.max_tokens, bad=True))
        time.sleep(2)
        res["engine_cancelled"] = engine.stats.remote().result()["cancelled"] - before
        results["mixed"] = res
        print(f"mixed  {res['valid']} valid / {res['bad']} bad / {res['cancelled']} cancelled: valid failures "
              f"{res['valid_failures']}, all terminated {res['all_terminated']}, bad all 4xx {res['bad_4xx']}, engine "
              f"stopped {res['engine_cancelled']} generations; p50 {res['p50_s']}s p99 {res['p99_s']}s "
              f"{res['tokens_per_s']} tok/s", flush=True)
        save()
    if "clean" in phases:
        n_valid = results.get("mixed", {}).get("valid") or args.requests - args.requests // 10 - args.requests // 20
        res = asyncio.run(run_mixed(base, n_valid, args.max_tokens, bad=False))
        results["clean"] = res
        print(f"clean  {res['valid']} valid: failures {res['valid_failures']}; p50 {res['p50_s']}s p99 {res['p99_s']}s "
              f"{res['tokens_per_s']} tok/s", flush=True)
        if "mixed" in results:
            m = results["mixed"]
            results["ratio_mixed_vs_clean"] = {k: round(m[k] / res[k], 3) for k in ("p50_s", "p99_s", "tokens_per_s")}
            print(f"mixed / clean: {results['ratio_mixed_vs_clean']}", flush=True)
        save()
    if "alternate" in phases:  # clean and mixed in turn on one app: is the mixed/clean gap the bad 15% or the order?
        n_valid = args.requests - args.requests // 10 - args.requests // 20
        rounds = []
        for _ in range(args.alternate_rounds):
            pair = {}
            for name, n, bad in (("clean", n_valid, False), ("mixed", args.requests, True)):
                r = asyncio.run(run_mixed(base, n, args.max_tokens, bad=bad))
                pair[name] = {k: r[k] for k in ("valid", "valid_failures", "all_terminated", "p50_s", "p99_s", "tokens_per_s")}
            pair["ratio_mixed_vs_clean"] = {k: round(pair["mixed"][k] / pair["clean"][k], 3) for k in ("p50_s", "p99_s", "tokens_per_s")}
            print(f"alternate  clean p99 {pair['clean']['p99_s']}s {pair['clean']['tokens_per_s']} tok/s, then mixed p99 "
                  f"{pair['mixed']['p99_s']}s {pair['mixed']['tokens_per_s']} tok/s: {pair['ratio_mixed_vs_clean']}", flush=True)
            rounds.append(pair)
        results["alternate"] = {"rounds": rounds, "order": "clean then mixed, per round"}
        save()
    if "noisy" in phases:
        from serve_noisy import run_noisy, server_pids

        cfg = load_config(None, ServeConfig, common)
        for tenant, cap, rate, key in floods:
            decompose = () if args.no_decompose or key != "noisy" else tuple(k for k in args.decompose.split(",") if k)
            res = asyncio.run(run_noisy(base, server_pids(app), args.max_tokens, args.b_rate, args.b_requests, args.reps,
                                        cap, {**KEYS, "noisy": KEYS[tenant]}, decompose=decompose))
            res["stream_interval_s"] = cfg.hf.stream_interval_s
            if args.engine == "vllm":
                res["vllm"] = cfg.vllm.model_dump()
            res["tenant_a"], res["tenant_a_rate_per_s"] = tenant, rate or None
            res["replica_loop_threads"] = {"engine": engine.stats.remote().result()["loop_thread"],
                                           "ingress": serve.get_deployment_handle("Ingress", app).replica_stats.remote().result()["loop_thread"]}
            results[key] = res
            for pair in res["reps"]:
                print(f"{key}  B p99 alone {pair['alone']['p99_s']}s (failures {pair['alone']['b_failures']}, cpu "
                      f"{pair['alone']['cpu']}), with A (cap {cap}, {rate}/s) flooding {pair['flood']['p99_s']}s (failures "
                      f"{pair['flood']['b_failures']}): ratio {pair['p99_ratio']} (goal <= 1.5); A: {pair['flood']['a']}; "
                      f"cpu {pair['flood']['cpu']}", flush=True)
            for name, phase in res.get("decomposition", {}).items():
                print(f"{key}  {name}: B p50 {phase['p50_s']} p99 {phase['p99_s']} ttft p99 {phase['ttft_p99_s']}; "
                      f"A {phase['a']}; cpu {phase['cpu']}", flush=True)
            save()
    if "soak" in phases:
        res = run_soak(base, app, args.soak_s, args.soak_rps, args.max_tokens)
        results["soak"] = res
        print(f"soak   {res['requests']} requests in {res['seconds']}s, errors {res['errors']}, RSS start "
              f"{res['rss_mib_start']} end {res['rss_mib_end']} growth {res['rss_growth']}", flush=True)
        save()
    serve.delete(app)
    if "interval" in phases:
        from serve_noisy import b_phase, server_pids

        sweep = []
        for value in [float(v) for v in args.interval_sweep.split(",") if v]:
            name = "load-interval"
            serve.run(build_app(load_config(None, ServeConfig, [*common, "engine_deployment.max_replicas=1",
                                                                f"hf.stream_interval_s={value}"])),
                      name=name, route_prefix="/", blocking=False)
            asyncio.run(run_mixed(base, 10, 4, bad=False))  # warm-up: adapters loaded before timing
            res = asyncio.run(b_phase(base, server_pids(name), args.b_rate, args.sweep_requests, args.max_tokens, None,
                                      args.noisy_cap, KEYS))
            sweep.append({"stream_interval_s": value, **res})
            print(f"interval {value}: B p50 {res['p50_s']} p99 {res['p99_s']} ttft p50 {res['ttft_p50_s']} p99 "
                  f"{res['ttft_p99_s']} gap p50 {res['gap_p50_s']} p99 {res['gap_p99_s']} events/request "
                  f"{res['content_events_per_request']} failures {res['b_failures']} cpu {res['cpu']}", flush=True)
            serve.delete(name)
        results["interval"] = {"b_rate_per_s": args.b_rate, "b_requests": args.sweep_requests, "sweep": sweep}
        save()
    if "autoscale" in phases:
        auto = "load-autoscale"
        serve.run(build_app(load_config(None, ServeConfig, [
            *common, "engine_deployment.min_replicas=1", "engine_deployment.max_replicas=2",
            "engine_deployment.num_cpus=0.5", "engine_deployment.target_ongoing_requests=2",
            "engine_deployment.upscale_delay_s=2", "engine_deployment.downscale_delay_s=5",
            "engine_deployment.look_back_period_s=5"])),
            name=auto, route_prefix="/", blocking=False)
        res = run_autoscale(base, auto, args.max_tokens, args.autoscale_load_s)
        results["autoscale"] = res
        print(f"autoscale replicas {res['replicas_start']} -> peak {res['replicas_peak']} -> {res['replicas_end']} "
              f"({res['requests']} requests, {res['errors']} errors)", flush=True)
        serve.delete(auto)
        save()
    serve.shutdown()
    save(complete=True)
    print(f"wrote {[str(out.with_name(f'{out.stem}_{p}.json')) for p in phases if p in results] if args.split else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
