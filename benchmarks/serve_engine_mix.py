"""What sharing a batch with another tenant costs a request in the HF engine (issue 20, noisy neighbour).

The HF engine generates every queued request as a row of one batch (peft mixed-adapter batches, `adapter_names`), so
under tenant A's flood tenant B's row runs next to A's 4 rows with A's adapter. This times `HFEngine._generate_rows`
in-process (no Serve, no HTTP, the model thread's work only, torch threads as in serve_load: 1) for batch
compositions of the noisy phase: B's row alone, A's 4 rows, B's row with A's 4 (two adapters), and 5 rows of one
adapter; 16 new tokens, greedy, median of ``--reps`` after a warm-up.

    python benchmarks/serve_engine_mix.py [--model tiny:llama] [--reps 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

COMPOSITIONS = {
    "b_alone": ["a2"],
    "a_at_cap": ["a4"] * 4,
    "a_at_cap_plus_b": ["a4"] * 4 + ["a2"],
    "five_rows_one_adapter": ["a2"] * 5,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny:llama")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=16)
    args = ap.parse_args()

    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.models.loader import resolve_model
    from app.serve.engine_hf import HFEngine
    from app.serve.protocol import AdapterTarget, EngineRequest
    from app.serve.random_adapter import write_random_adapter

    base = resolve_model(args.model)
    root = Path(tempfile.mkdtemp(prefix="rayalign-mix-"))
    for name in ("a2", "a4"):  # as serve_load writes them
        write_random_adapter(base.path, root / name, seed=200 + int(name[1:]), r=8, std=0.05)
    cfg = load_config(None, ServeConfig, [f"model.source={args.model}", "engine=hf", "limits.max_model_len=512",
                                          "engine_deployment.num_cpus=1"])
    engine = HFEngine(cfg.model_dump(mode="json"))
    for name in ("a2", "a4"):
        engine.paths[name] = root / name
        engine._load_sync(name)
    prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": "Write a short story about the sea."}],
                                                  add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]

    def rows(names):
        return [EngineRequest(prompt_token_ids=list(prompt), max_tokens=args.max_tokens, temperature=0.0,
                              adapter=AdapterTarget(key=n, label=n, uri=str(root / n))) for n in names]

    out = {}
    for label, names in COMPOSITIONS.items():
        batch = rows(names)
        engine._generate_rows(batch, [threading.Event() for _ in batch], [None] * len(batch))  # warm-up
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            engine._generate_rows(batch, [threading.Event() for _ in batch], [None] * len(batch))
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        out[label] = {"rows": len(names), "adapters": sorted(set(names)), "median_s": round(med, 4),
                      "ms_per_step": round(1000 * med / args.max_tokens, 2), "min_s": round(min(times), 4)}
        print(label, out[label], flush=True)
    alone = out["b_alone"]["median_s"]
    result = {"command": "python benchmarks/serve_engine_mix.py " + " ".join(sys.argv[1:]), "model": args.model,
              "max_tokens": args.max_tokens, "reps": args.reps, "prompt_tokens": len(prompt),
              "torch_threads": __import__("torch").get_num_threads(), "compositions": out,
              "b_in_a_batch_vs_alone": round(out["a_at_cap_plus_b"]["median_s"] / alone, 3),
              "five_rows_one_adapter_vs_alone": round(out["five_rows_one_adapter"]["median_s"] / alone, 3)}
    path = Path(__file__).parent / "results" / "serve_engine_mix.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"B's row in A's batch / alone: {result['b_in_a_batch_vs_alone']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
