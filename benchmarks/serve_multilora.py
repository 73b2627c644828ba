"""Multi-LoRA serving throughput through the full stack (OpenAI client → Serve ingress → engine), SmolLM2-135M.

One run measures, with the same prompts and settings:
  vLLM, 1 adapter      (baseline)       — every request on adapter a0
  vLLM, 4 adapters mixed                — round-robin a0..a3 in the same batches (goal: ≥ 0.8× the baseline)
  HF/peft fallback, 4 adapters mixed    — same workload on the fallback engine
and prints completion tokens/s, request p50/p99 latency and the ratios; JSON goes to
benchmarks/results/serve_multilora.json.

    python benchmarks/serve_multilora.py [--requests 48] [--concurrency 16] [--max-tokens 32]

(Set RAYALIGN_HOME to a home whose models/ already holds the converted SmolLM2, or the first run converts it.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEY = "sk-bench"
TOPICS = ["the sea", "a mountain", "a city at night", "an old library", "the first snow", "a train journey",
          "a small garden", "a thunderstorm"]


async def run_load(url: str, models: list[str], n: int, concurrency: int, max_tokens: int) -> dict:
    """n chat requests (model i % len(models)) with at most `concurrency` in flight; tokens/s over the wall time."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=600)
    gate = asyncio.Semaphore(concurrency)
    latencies, tokens, errors = [], 0, 0

    async def one(i: int):
        nonlocal tokens, errors
        async with gate:
            t0 = time.perf_counter()
            try:
                out = await client.chat.completions.create(
                    model=models[i % len(models)], max_tokens=max_tokens, temperature=0,
                    messages=[{"role": "user", "content": f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}."}],
                )
                tokens += out.usage.completion_tokens
                latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors += 1
                print("error:", type(exc).__name__, exc, file=sys.stderr)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [latencies[0]] * 99
    return {"requests": n, "errors": errors, "completion_tokens": tokens, "wall_s": round(wall, 2),
            "tokens_per_s": round(tokens / wall, 2), "p50_s": round(q[49], 3), "p99_s": round(q[98], 3)}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deploy(cfg, name: str) -> None:
    from ray import serve

    from app.serve.app import build_app

    serve.run(build_app(cfg), name=name, route_prefix="/", blocking=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    from ray import serve

    from app.config.common import RaySpec
    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.launch.runtime import init_ray
    from app.models.loader import resolve_model
    from app.serve.auth import hash_key
    from app.serve.random_adapter import write_random_adapter

    base = resolve_model("bundled:smollm2-135m-instruct")
    root = Path(tempfile.mkdtemp(prefix="rayalign-bench-adapters-"))
    for i in range(4):
        write_random_adapter(base.path, root / "bench" / f"a{i}", seed=100 + i)
    for attempt in range(3):  # Ray gives a raylet 30 s to register; a busy shared machine can miss that
        try:
            init_ray(RaySpec(address="local", num_cpus=2))
            break
        except Exception as exc:  # noqa: BLE001 - retried, then re-raised
            print(f"ray start attempt {attempt + 1} failed: {exc}", file=sys.stderr)
            if attempt == 2:
                raise
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}/v1"
    common = [f"adapters.root={root}", f"tenants=[{{name: bench, api_key_sha256: [{hash_key(KEY)}]}}]",
              "limits.max_model_len=512", "limits.max_tokens=128", "engine_deployment.num_cpus=1",
              "ingress_deployment.num_cpus=0.1"]
    adapters = [f"a{i}" for i in range(4)]
    results: dict = {"config": vars(args), "model": "bundled:smollm2-135m-instruct", "cpu_count": os.cpu_count()}
    out = Path(__file__).parent / "results" / "serve_multilora.json"

    def measure(label: str, models: list[str]) -> dict:
        asyncio.run(run_load(url, adapters, 4, 4, 4))  # warm-up: every adapter loaded before timing
        res = asyncio.run(run_load(url, models, args.requests, args.concurrency, args.max_tokens))
        print(f"{label:<28} {res['tokens_per_s']:7.1f} tok/s  p50 {res['p50_s']:.2f}s  p99 {res['p99_s']:.2f}s  errors {res['errors']}", flush=True)
        out.write_text(json.dumps(results | {label: res, "complete": False}, indent=2))  # a cut-short run keeps its numbers
        return res

    t0 = time.perf_counter()
    deploy(load_config(None, ServeConfig, ["engine=vllm", "vllm.max_loras=4", "vllm.max_lora_rank=8", *common]), "bench-vllm")
    print(f"vLLM app up in {time.perf_counter() - t0:.0f}s", flush=True)
    results["vllm_1_adapter"] = measure("vLLM, 1 adapter", ["a0"])
    results["vllm_4_adapters_mixed"] = measure("vLLM, 4 adapters mixed", adapters)
    serve.delete("bench-vllm")
    if not args.skip_hf:
        t0 = time.perf_counter()
        deploy(load_config(None, ServeConfig, ["engine=hf", "hf.max_batch_size=16", "hf.max_adapters_per_replica=4", "hf.num_threads=2", *common]), "bench-hf")
        print(f"HF app up in {time.perf_counter() - t0:.0f}s", flush=True)
        results["hf_4_adapters_mixed"] = measure("HF/peft, 4 adapters mixed", adapters)
        serve.delete("bench-hf")
    serve.shutdown()

    single, mixed = results["vllm_1_adapter"]["tokens_per_s"], results["vllm_4_adapters_mixed"]["tokens_per_s"]
    results["ratio_mixed_vs_single"] = round(mixed / single, 3)
    print(f"4 adapters mixed / 1 adapter (vLLM): {results['ratio_mixed_vs_single']:.2f}x  (goal >= 0.8x)")
    if "hf_4_adapters_mixed" in results:
        results["ratio_vllm_vs_hf_mixed"] = round(mixed / results["hf_4_adapters_mixed"]["tokens_per_s"], 3)
        print(f"vLLM / HF-peft, 4 adapters mixed: {results['ratio_vllm_vs_hf_mixed']:.2f}x")
    out.write_text(json.dumps(results | {"complete": True}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
