"""serve_load.py's abuse mix on both vLLM backends behind the same tenant/auth ingress: VLLMEngine vs ray.serve.llm's LLMServer.

Same SmolLM2-135M, the same 4 random rank-8 adapters of 2 tenants (serve_load.py's t0: a0, a1; t1: a2, a3), uploaded to
a moto S3 server on 127.0.0.1 and resolved by both apps from ``adapters.root: s3://.../adapters`` (ObjectStoreResolver),
so the only difference is the Engine deployment (``vllm.backend``: ``rayalign`` = VLLMEngine, ``ray_serve_llm`` =
TenantLLMServer). Per app, in ``--order``: start-up (serve.run until RUNNING), a warm-up (every adapter loaded), then
serve_load.py's ``mixed`` phase (``run_mixed``: N concurrent streaming chat requests, 10% malformed or poisoned, 5%
cancelled after their first token; 0 failures among the valid, every stream terminated, bad ones 4xx, cancelled
generations counted by the engine) and, unless ``--no-clean``, the same valid requests alone. Both backends: vLLM
float32, enforce_eager, max_model_len 512, max_loras 4, max_cpu_loras 5, max_lora_rank 8, max_num_seqs 32, seed 0,
one engine replica with 1 CPU. Ratios ray_serve_llm / rayalign (p50, p99, tokens/s) are printed and recorded.
JSON: benchmarks/results/serve_llmserver_load.json (written after each app).

    python benchmarks/serve_llmserver_load.py [--requests 200] [--max-tokens 16] [--order rayalign,ray_serve_llm]
                                              [--no-clean] [--mixed-reps 1] [--budget-s 600] [--out results/....json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from local_services import start_moto_s3, start_serve_http
from serve_load import ADAPTERS, KEYS, app_commit, run_mixed  # the same load mix (benchmarks/ is the script's folder)

BUCKET = "rayalign-load"
OUT = Path(__file__).parent / "results" / "serve_llmserver_load.json"
PASS_ENV = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"]


def start_s3(local_root: Path, tenants: list[str]) -> tuple[object, str]:
    """A moto S3 server on 127.0.0.1 holding ``<root>/<tenant>/<name>/`` for the tenants' adapters; AWS_* env set."""
    from app.launch.storage import upload_folder

    server, _ = start_moto_s3(BUCKET)
    root = f"s3://{BUCKET}/adapters"
    for tenant in tenants:
        for name in ADAPTERS[tenant]:
            upload_folder(local_root / tenant / name, f"{root}/{tenant}/{name}")
    return server, root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--order", default="rayalign,ray_serve_llm", help="backends in the order run (a name may repeat)")
    ap.add_argument("--no-clean", action="store_true", help="skip the valid-requests-alone phase")
    ap.add_argument("--mixed-reps", type=int, default=1, help="mixed phases per app, back to back ('mixed' = the first)")
    ap.add_argument("--budget-s", type=float, default=None, help="start no further app once this many seconds have passed")
    ap.add_argument("--out", default=str(OUT), help="results JSON (default results/serve_llmserver_load.json)")
    args = ap.parse_args()
    out = Path(args.out)
    t_start = time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a hold's timeout: still shut Serve and Ray down
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from ray import serve

    from app.config.common import RaySpec
    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.launch.runtime import init_ray
    from app.models.loader import resolve_model
    from app.serve.app import build_app
    from app.serve.auth import hash_key
    from app.serve.random_adapter import write_random_adapter

    model = "bundled:smollm2-135m-instruct"
    tenants = ["t0", "t1"]
    base_model = resolve_model(model)
    local = Path(tempfile.mkdtemp(prefix="rayalign-llmload-"))
    for tenant in tenants:
        for name in ADAPTERS[tenant]:
            write_random_adapter(base_model.path, local / tenant / name, seed=200 + int(name[1:]), r=8, std=0.05)
    s3_server, root = start_s3(local, tenants)  # before Ray starts: its workers inherit the endpoint (and pass_env)
    init_ray(RaySpec(address="local", num_cpus=2))
    base = start_serve_http()
    tenant_list = ", ".join(f"{{name: {t}, api_key_sha256: [{hash_key(KEYS[t])}]}}" for t in tenants)
    common = [f"model.source={model}", "engine=vllm", f"adapters.root={root}", f"adapters.pass_env={json.dumps(PASS_ENV)}",
              f"tenants=[{tenant_list}]", "limits.max_model_len=512", "limits.max_tokens=128",
              "engine_deployment.num_cpus=1", "engine_deployment.min_replicas=1", "engine_deployment.max_replicas=1",
              "ingress_deployment.num_cpus=0.1", "ingress_deployment.max_replicas=1", "vllm.max_loras=4",
              "vllm.max_cpu_loras=5", "vllm.max_lora_rank=8", "vllm.max_num_seqs=32", "vllm.dtype=float32"]
    results: dict = {"command": "python benchmarks/serve_llmserver_load.py " + " ".join(sys.argv[1:]), "config": vars(args),
                     "model": model, "cpu_count": os.cpu_count(), "app_commit": app_commit(), "adapter_store": "moto S3",
                     "runs": [], "complete": False}

    def save() -> None:
        out.write_text(json.dumps(results, indent=2, default=str))

    try:
        for k, backend in enumerate(args.order.split(",")):
            if args.budget_s and k and time.perf_counter() - t_start > args.budget_s:
                print(f"budget of {args.budget_s:.0f}s spent: skipping {backend} and after", flush=True)
                break
            run: dict = {"backend": backend}
            results["runs"].append(run)
            app = f"llmload-{k}"
            t0 = time.perf_counter()
            try:
                serve.run(build_app(load_config(None, ServeConfig, [*common, f"vllm.backend={backend}"])), name=app,
                          route_prefix="/", blocking=False)
            except Exception as exc:  # noqa: BLE001 - a deployment that does not start is this backend's result
                run["error"] = f"{type(exc).__name__}: {exc}"[:3000]
                print(f"{backend}: deploy failed: {run['error']}", flush=True)
                save()
                continue
            run["startup_s"] = round(time.perf_counter() - t0, 1)
            print(f"{backend}: up in {run['startup_s']}s", flush=True)
            asyncio.run(run_mixed(base, 10, 4, bad=False))  # warm-up: every adapter loaded before timing
            engine = serve.get_deployment_handle("Engine", app)
            before = engine.stats.remote().result()["cancelled"]
            reps = []
            for _ in range(args.mixed_reps):
                res = asyncio.run(run_mixed(base, args.requests, args.max_tokens, bad=True))
                time.sleep(2)
                res["engine_cancelled"] = engine.stats.remote().result()["cancelled"] - before
                before += res["engine_cancelled"]
                reps.append(res)
                run["mixed"], run["mixed_reps"] = reps[0], reps  # 'mixed' is the first (the ratios use it)
                save()
                print(f"{backend} mixed: {res['valid']} valid / {res['bad']} bad / {res['cancelled']} cancelled: valid "
                      f"failures {res['valid_failures']}, all terminated {res['all_terminated']}, bad all 4xx {res['bad_4xx']} "
                      f"{res['bad_statuses']}, engine stopped {res['engine_cancelled']}; p50 {res['p50_s']}s p99 "
                      f"{res['p99_s']}s ttft p50 {res['ttft_p50_s']}s {res['tokens_per_s']} tok/s", flush=True)
            if not args.no_clean:
                clean = asyncio.run(run_mixed(base, res["valid"], args.max_tokens, bad=False))
                run["clean"] = clean
                print(f"{backend} clean: {clean['valid']} valid: failures {clean['valid_failures']}; p50 {clean['p50_s']}s "
                      f"p99 {clean['p99_s']}s {clean['tokens_per_s']} tok/s", flush=True)
            run["engine_stats"] = engine.stats.remote().result()
            serve.delete(app)
            save()
        results["ratio_ray_serve_llm_vs_rayalign"] = ratios(results["runs"])
        print(f"ray_serve_llm / rayalign: {results['ratio_ray_serve_llm_vs_rayalign']}", flush=True)
        results["complete"] = True
    finally:
        save()
        serve.shutdown()
        s3_server.stop()
    print(f"wrote {out}")
    return 0


def ratios(runs: list[dict]) -> dict:
    """Mean over each backend's runs, then ray_serve_llm / rayalign, per phase and metric."""
    out = {}
    for phase in ("mixed", "clean"):
        means = {}
        for backend in ("rayalign", "ray_serve_llm"):
            got = [r[phase] for r in runs if r["backend"] == backend and phase in r]
            if got:
                means[backend] = {k: sum(g[k] for g in got) / len(got) for k in ("p50_s", "p99_s", "tokens_per_s")}
        if len(means) == 2:
            out[phase] = {k: round(means["ray_serve_llm"][k] / means["rayalign"][k], 3) for k in means["rayalign"]}
    return out


if __name__ == "__main__":
    sys.exit(main())
