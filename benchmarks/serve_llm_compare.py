"""ray.serve.llm against rayalign's own vLLM serve path: same SmolLM2-135M, same LoRA adapters, same streaming requests.

(a) ``rayalign``: the tenant/auth ingress + ``VLLMEngine`` deployment (configs/serve/smollm2_vllm.yaml, as
    serve_multilora.py runs it), adapters from a local folder ``<root>/bench/a<i>``, models ``a0``..``a<k-1>``.
(b) ``ray_serve_llm``: Ray 2.60's ``build_openai_app`` (OpenAiIngress + ``LLMServer``) with
    ``accelerator_config={"kind": "cpu"}``; its dynamic LoRA loading takes only object-store URIs, so the same adapter
    folders are uploaded to a moto S3 server on 127.0.0.1 and served as ``smollm2-135m-instruct:a<i>``.
Both: one engine replica (1 CPU reserved), vLLM dtype float32, enforce_eager, max_model_len 512, max_loras 4,
max_cpu_loras 8, max_lora_rank 8, max_num_seqs = concurrency, seed 0, VLLM_CPU_KVCACHE_SPACE 1 and
VLLM_CPU_OMP_THREADS_BIND on every allowed CPU. Each system: start-up (deploy until the app is RUNNING), a warm-up
(every adapter loaded once), then ``--requests`` streaming chat completions (greedy, ``--max-tokens``, round-robin
over the adapters, ``--concurrency`` in flight) through the official openai client. Reported per system: completion
tokens/s, p50/p99 latency, p50/p99 time to first token, errors; and per request whether both returned the same text.
JSON: benchmarks/results/serve_llm_compare.json (written after each phase; ``complete`` marks a full run).

    python benchmarks/serve_llm_compare.py [--requests 48] [--concurrency 16] [--max-tokens 32] [--adapters 4]
                                           [--order rayalign,ray_serve_llm] [--deploy-timeout-s 180]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from local_services import start_moto_s3, start_serve_http  # benchmarks/ is the script's folder

KEY = "sk-bench"
BASE_ID = "smollm2-135m-instruct"
BUCKET = "rayalign-bench"
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "serve"
OUT = Path(__file__).parent / "results" / "serve_llm_compare.json"
TOPICS = ["the sea", "a mountain", "a city at night", "an old library", "the first snow", "a train journey",
          "a small garden", "a thunderstorm"]


def q(xs: list[float], p: int) -> float | None:
    if not xs:
        return None
    return round(statistics.quantiles(xs, n=100, method="inclusive")[p - 1] if len(xs) > 1 else xs[0], 3)


async def stream_chat(client, model: str, i: int, max_tokens: int) -> dict:
    """One streaming chat completion: text, completion tokens (from the usage chunk), latency, time to first token."""
    t0 = time.perf_counter()
    rec = {"i": i, "model": model, "text": "", "tokens": 0, "ttft_s": None, "latency_s": None, "error": None}
    try:
        stream = await client.chat.completions.create(
            model=model, max_tokens=max_tokens, temperature=0, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}."}])
        parts = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if rec["ttft_s"] is None:
                    rec["ttft_s"] = time.perf_counter() - t0
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage:
                rec["tokens"] = chunk.usage.completion_tokens
        rec["text"], rec["latency_s"] = "".join(parts), time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - counted and reported
        rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return rec


async def run_load(url: str, models: list[str], n: int, concurrency: int, max_tokens: int) -> tuple[dict, list[dict]]:
    """n streaming requests (request i on models[i % len(models)]), at most `concurrency` in flight."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=300)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> dict:
        async with gate:
            return await stream_chat(client, models[i % len(models)], i, max_tokens)

    t0 = time.perf_counter()
    async with client:  # closed inside this loop (else its connections close after asyncio.run: "Event loop is closed")
        recs = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    ok = [r for r in recs if r["error"] is None]
    tokens = sum(r["tokens"] for r in ok)
    lat, ttft = [r["latency_s"] for r in ok], [r["ttft_s"] for r in ok if r["ttft_s"] is not None]
    summary = {"requests": n, "errors": n - len(ok), "error_samples": sorted({r["error"] for r in recs if r["error"]})[:3],
               "completion_tokens": tokens, "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 2),
               "p50_s": q(lat, 50), "p99_s": q(lat, 99), "ttft_p50_s": q(ttft, 50), "ttft_p99_s": q(ttft, 99)}
    return summary, recs


def start_s3(adapter_dirs: list[Path]) -> tuple[object, str]:
    """A moto S3 server on 127.0.0.1 holding each adapter folder under s3://BUCKET/loras/<name>/."""
    import boto3

    server, endpoint = start_moto_s3(BUCKET)  # before ray.init: Ray's workers inherit its endpoint and credentials
    s3 = boto3.client("s3", endpoint_url=endpoint)
    for folder in adapter_dirs:
        for f in folder.iterdir():
            s3.upload_file(str(f), BUCKET, f"loras/{folder.name}/{f.name}")
    return server, f"s3://{BUCKET}/loras"


def deploy(app, name: str, timeout_s: float) -> dict:
    """Deploy and wait for RUNNING: {"startup_s"} or {"error"} (DEPLOY_FAILED message, or the deadline)."""
    from ray import serve

    t0 = time.perf_counter()
    try:
        serve._run(app, name=name, route_prefix="/", _blocking=False)
    except Exception as exc:  # noqa: BLE001 - a build/validation failure is this system's measured result
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    while time.perf_counter() - t0 < timeout_s:
        st = serve.status().applications.get(name)
        if st is not None and st.status == "RUNNING":
            return {"startup_s": round(time.perf_counter() - t0, 1)}
        if st is not None and st.status in ("DEPLOY_FAILED", "UNHEALTHY"):
            msgs = [st.message] + [d.message for d in st.deployments.values() if d.message]
            return {"error": f"{st.status}: " + " | ".join(m for m in msgs if m)[:4000]}
        time.sleep(1)
    st = serve.status().applications.get(name)
    return {"error": f"not RUNNING after {timeout_s:.0f}s: {st.status if st else None} {st.message if st else ''}"[:2000]}


def replica_log_tail(deployment: str, lines: int = 40) -> list[str]:
    """The end of the newest Serve replica log of `deployment` (why a replica failed to start)."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs" / "serve"
    files = sorted(logs.glob(f"replica_*{deployment}*.log"), key=lambda f: f.stat().st_mtime)
    return files[-1].read_text(errors="replace").splitlines()[-lines:] if files else []


def rayalign_app(root: Path, concurrency: int, max_loras: int):
    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.serve.app import build_app
    from app.serve.auth import hash_key

    cfg = load_config(CONFIGS / "smollm2_vllm.yaml", ServeConfig, [
        f"adapters.root={root}", f"tenants=[{{name: bench, api_key_sha256: [{hash_key(KEY)}]}}]",
        "limits.max_model_len=512", "limits.max_tokens=128", "engine_deployment.num_cpus=1",
        "engine_deployment.min_replicas=1", "engine_deployment.max_replicas=1", "ingress_deployment.num_cpus=0.1",
        f"vllm.max_loras={max_loras}", "vllm.max_cpu_loras=8", "vllm.max_lora_rank=8", f"vllm.max_num_seqs={concurrency}",
        "vllm.dtype=float32", "vllm.enforce_eager=true", "vllm.cpu_kvcache_gib=1", "vllm.cpu_omp_threads_bind=all"])
    return build_app(cfg), cfg.vllm.model_dump()


def ray_llm_config(model_dir: Path, lora_path: str, concurrency: int, max_loras: int) -> dict:
    """The LLMConfig for (b), as a dict (also recorded in the JSON)."""
    from app.models.vllm_cpu_env import omp_threads_bind

    return {
        "model_loading_config": {"model_id": BASE_ID, "model_source": str(model_dir)},
        "accelerator_config": {"kind": "cpu"},
        "placement_group_config": {"bundles": [{"CPU": 1}]},  # the engine's 1 CPU, as rayalign's engine_deployment
        "engine_kwargs": {"dtype": "float32", "enforce_eager": True, "max_model_len": 512, "enable_lora": True,
                          "max_loras": max_loras, "max_cpu_loras": 8, "max_lora_rank": 8, "max_num_seqs": concurrency,
                          "seed": 0},
        "lora_config": {"dynamic_lora_loading_path": lora_path, "max_num_adapters_per_replica": 8},
        "deployment_config": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}},
        "runtime_env": {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": omp_threads_bind("all"),
                                     **{k: os.environ[k] for k in os.environ if k.startswith("AWS_")}}},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--adapters", type=int, default=4)
    ap.add_argument("--order", default="rayalign,ray_serve_llm")
    ap.add_argument("--deploy-timeout-s", type=float, default=180)
    ap.add_argument("--reps", type=int, default=1, help="timed runs per system (the first one's texts are compared)")
    ap.add_argument("--budget-s", type=float, default=None, help="skip further reps once this many seconds have passed")
    args = ap.parse_args()
    t_start = time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a hold's timeout: still shut Serve and Ray down
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from ray import serve

    from app.config.common import RaySpec
    from app.config.paths import rayalign_home
    from app.launch.runtime import init_ray
    from app.models.loader import resolve_model
    from app.models.vllm_cpu_env import vllm_model_dir
    from app.serve.random_adapter import write_random_adapter

    base = resolve_model(f"bundled:{BASE_ID}")
    model_dir = vllm_model_dir(base.path, rayalign_home() / "serve" / "vllm-views")
    root = Path(tempfile.mkdtemp(prefix="rayalign-llmcmp-"))
    names = [f"a{i}" for i in range(args.adapters)]
    dirs = [write_random_adapter(base.path, root / "bench" / n, seed=100 + i, r=8, std=0.05) for i, n in enumerate(names)]
    s3_server, lora_path = start_s3(dirs)
    max_loras = min(4, args.adapters)
    results: dict = {"config": vars(args), "model": f"bundled:{BASE_ID}", "cpu_count": os.cpu_count(),
                     "adapters": names, "lora_s3_path": lora_path, "complete": False}

    def save() -> None:
        OUT.write_text(json.dumps(results, indent=2))

    init_ray(RaySpec(address="local", num_cpus=2))
    url = start_serve_http() + "/v1"
    texts: dict[str, list] = {}
    try:
        for system in args.order.split(","):
            if system == "rayalign":
                app, settings = rayalign_app(root, args.concurrency, max_loras)
                models = names
            else:
                from ray.serve.llm import build_openai_app

                settings = ray_llm_config(model_dir, lora_path, args.concurrency, max_loras)
                models = [f"{BASE_ID}:{n}" for n in names]
                try:
                    app = build_openai_app({"llm_configs": [settings], "ingress_deployment_config": {
                        "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.1}}})
                except Exception as exc:  # noqa: BLE001 - a config the library refuses is the measured result
                    results[system] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                    save()
                    continue
            res = {"settings": {k: v for k, v in settings.items() if k != "runtime_env"} if isinstance(settings, dict) else settings}
            res.update(deploy(app, f"cmp-{system}", args.deploy_timeout_s))
            print(f"{system}: deploy {res.get('startup_s')} s {res.get('error', '')}", flush=True)
            results[system] = res
            save()
            if "error" not in res:
                t0 = time.perf_counter()
                warm, _ = asyncio.run(run_load(url, models, len(models), len(models), 4))  # every adapter loaded
                res["warmup"] = warm | {"seconds": round(time.perf_counter() - t0, 1)}
                res["load_reps"] = []
                for rep in range(args.reps):
                    if rep and args.budget_s and time.perf_counter() - t_start > args.budget_s:
                        break
                    summary, recs = asyncio.run(run_load(url, models, args.requests, args.concurrency, args.max_tokens))
                    res["load_reps"].append(summary)
                    if rep == 0:
                        res["load"] = summary
                        texts[system] = [r["text"] if r["error"] is None else None for r in recs]
                        res["samples"] = [{"model": r["model"], "text": r["text"][:120]} for r in recs[:len(models)]]
                    print(f"{system} rep {rep}: {summary}", flush=True)
                    save()
            else:
                res["replica_log_tail"] = replica_log_tail("LLMServer" if system != "rayalign" else "Engine")
                save()
            serve.delete(f"cmp-{system}")
        if len(texts) == 2:
            a, b = texts.values()
            same = [i for i in range(len(a)) if a[i] is not None and a[i] == b[i]]
            both = [i for i in range(len(a)) if a[i] is not None and b[i] is not None]
            results["same_text"] = {"requests_compared": len(both), "identical": len(same),
                                    "differing_requests": [i for i in both if i not in same][:20]}
            mean = {s: statistics.mean(r["tokens_per_s"] for r in results[s]["load_reps"]) for s in texts}
            results["tokens_per_s_ratio_ray_serve_llm_vs_rayalign"] = round(mean["ray_serve_llm"] / mean["rayalign"], 3)
        results["complete"] = True
        save()
    finally:
        try:
            serve.shutdown()
        finally:
            import ray

            ray.shutdown()
            s3_server.stop()
    print(json.dumps({k: v for k, v in results.items() if k in ("same_text", "tokens_per_s_ratio_ray_serve_llm_vs_rayalign")}))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
