"""Multi-LoRA serving throughput through the full stack (OpenAI client → Serve ingress → engine), SmolLM2-135M.

One run measures, with the same prompts and settings:
  vLLM, 1 adapter      (baseline)       — every request on adapter a0
  vLLM, 4 adapters mixed                — round-robin a0..a3 in the same batches (goal: ≥ 0.8× the baseline)
  HF/peft fallback, 4 adapters mixed    — same workload on the fallback engine
and prints completion tokens/s, request p50/p99 latency and the ratios; JSON goes to
benchmarks/results/serve_multilora.json.

    python benchmarks/serve_multilora.py [--requests 48] [--concurrency 16] [--max-tokens 32] [--hf-requests 48]
                                         [--set vllm.dtype=bfloat16 ...]

The engines run with the shipped configs/serve/smollm2_{vllm,hf}.yaml (one engine replica, the benchmark's adapters
and key) plus ``--set`` overrides; vLLM's ``max_num_seqs`` and the HF batch size are sized to ``--concurrency``.
``--hf-requests`` shortens the HF run when it is slow: tokens/s and per-request latency stay comparable at the same
concurrency and max_tokens.

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

from local_services import start_serve_http  # benchmarks/ is the script's folder


KEY = "sk-bench"
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "serve"  # the shipped serve configs, benchmarked as-is
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
    async with client:  # closed inside this loop (else its connections close after asyncio.run: "Event loop is closed")
        await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [latencies[0]] * 99
    return {"requests": n, "errors": errors, "completion_tokens": tokens, "wall_s": round(wall, 2),
            "tokens_per_s": round(tokens / wall, 2), "tokens_per_request": round(tokens / max(1, len(latencies)), 1),
            "p50_s": round(q[49], 3), "p99_s": round(q[98], 3)}


def deploy(cfg, name: str) -> None:
    from ray import serve

    from app.serve.app import build_app

    serve.run(build_app(cfg), name=name, route_prefix="/", blocking=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--hf-requests", type=int, default=None, help="requests for the HF/peft run (default: --requests)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="extra ServeConfig override for every engine (repeatable), e.g. vllm.dtype=bfloat16")
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
    url = start_serve_http() + "/v1"
    common = [f"adapters.root={root}", f"tenants=[{{name: bench, api_key_sha256: [{hash_key(KEY)}]}}]",
              "limits.max_model_len=512", "limits.max_tokens=128", "engine_deployment.num_cpus=1",
              "engine_deployment.max_replicas=1",  # one engine replica: the numbers are per replica
              "ingress_deployment.num_cpus=0.1", *args.overrides]
    adapters = [f"a{i}" for i in range(4)]
    results: dict = {"config": vars(args), "model": "bundled:smollm2-135m-instruct", "cpu_count": os.cpu_count()}
    out = Path(__file__).parent / "results" / "serve_multilora.json"

    def measure(label: str, models: list[str], n: int) -> dict:
        asyncio.run(run_load(url, adapters, 4, 4, 4))  # warm-up: every adapter loaded before timing
        res = asyncio.run(run_load(url, models, n, args.concurrency, args.max_tokens))
        print(f"{label:<28} {res['tokens_per_s']:7.1f} tok/s  p50 {res['p50_s']:.2f}s  p99 {res['p99_s']:.2f}s  errors {res['errors']}", flush=True)
        out.write_text(json.dumps(results | {label: res, "complete": False}, indent=2))  # a cut-short run keeps its numbers
        return res

    t0 = time.perf_counter()
    vllm_cfg = load_config(CONFIGS / "smollm2_vllm.yaml", ServeConfig,
                           ["vllm.max_loras=4", "vllm.max_lora_rank=8", f"vllm.max_num_seqs={args.concurrency}", *common])
    results["vllm_settings"] = vllm_cfg.vllm.model_dump() | {
        "env_VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND")}  # the env wins over the config
    deploy(vllm_cfg, "bench-vllm")
    results["vllm_startup_s"] = round(time.perf_counter() - t0, 1)
    print(f"vLLM app up in {results['vllm_startup_s']:.0f}s", flush=True)
    results["vllm_1_adapter"] = measure("vLLM, 1 adapter", ["a0"], args.requests)
    results["vllm_4_adapters_mixed"] = measure("vLLM, 4 adapters mixed", adapters, args.requests)
    serve.delete("bench-vllm")
    if not args.skip_hf:
        t0 = time.perf_counter()
        hf_cfg = load_config(CONFIGS / "smollm2_hf.yaml", ServeConfig,
                             [f"hf.max_batch_size={args.concurrency}", "hf.max_adapters_per_replica=4", "hf.num_threads=2", *common])
        results["hf_settings"] = hf_cfg.hf.model_dump()
        deploy(hf_cfg, "bench-hf")
        results["hf_startup_s"] = round(time.perf_counter() - t0, 1)
        print(f"HF app up in {results['hf_startup_s']:.0f}s", flush=True)
        results["hf_4_adapters_mixed"] = measure("HF/peft, 4 adapters mixed", adapters, args.hf_requests or args.requests)
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
