"""DPO step time: rayalign (reference log-probs precomputed once, packed, head only on response tokens) vs TRL
DPOTrainer configured two ways, same model, LoRA, data, batch and threads, one run:

- ``trl_fast``: what TRL's docs recommend for speed and memory: ``precompute_ref_log_probs=True`` (no reference
  forward per step) and ``padding_free=True``. TRL 1.16 logs that padding-free is "temporarily unavailable after a
  refactor" and falls back to padded batches (trl/trainer/dpo_trainer.py); the row records whether it took effect.
- ``trl_default``: TRL's defaults: a live reference (the same model with the LoRA adapter disabled), padded batches.

    python benchmarks/dpo_step.py                      # tiny model, synthetic learnable pairs (what CI-sized runs use)
    python benchmarks/dpo_step.py --model bundled:smollm2-135m-instruct --pairs 48 --batch 4

Prints median seconds per optimizer step for both and the ratio rayalign / TRL (goal <= 0.6); also the one-time
cost of the precompute. Writes benchmarks/results/dpo_step.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def make_pairs(source: str, n: int):
    from app.data.synthetic import synthetic_pairs  # learnable synthetic pairs, tokenized with this model's template

    from app.models.loader import load_tokenizer

    tok = load_tokenizer(source)
    return tok, synthetic_pairs(tok, n, seed=0)


def rayalign_steps(model_path: str, tok, rows: list[dict], batch: int, steps: int, lr: float) -> tuple[list[float], float]:
    """Our DPO step: one packed policy forward+backward per batch; reference read from precomputed columns."""
    from app.config.dpo import DPOConfig
    from app.data.reference_logprobs import load_reference_model, pair_logprobs
    from app.models.lora import load_trainable_model
    from app.train.dpo import PolicyLogprobs, preference_objective
    from app.train.pairs import pack_pairs

    t0 = time.perf_counter()
    ref = load_reference_model(model_path, None, "float32")
    with torch.inference_mode():
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            c, r = pair_logprobs(ref, {k: [x[k] for x in chunk] for k in chunk[0]})
            for x, lc, lr_ in zip(chunk, c.tolist(), r.tolist()):
                x["ref_chosen_logp"], x["ref_rejected_logp"] = lc, lr_
    precompute_s = time.perf_counter() - t0
    del ref
    cfg = DPOConfig.model_validate({"model": {"source": model_path}, "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
                                    "optim": {"lr": lr}, "train": {"micro_batch_size": batch}, "dpo": {"beta": 0.1}})
    model = PolicyLogprobs(load_trainable_model(model_path, "lora", cfg.lora, cfg.quant))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    times = []
    for s in range(steps):
        chunk = [rows[(s * batch + j) % len(rows)] for j in range(batch)]
        t = time.perf_counter()
        cols = {k: [x[k] for x in chunk] for k in chunk[0]}
        loss, _, _ = preference_objective(model(pack_pairs(cols, with_labels=True)), cols, cfg.dpo)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - t)
    return times, precompute_s


def trl_steps(model_path: str, tok, rows: list[dict], batch: int, steps: int, lr: float, fast: bool) -> tuple[list[float], dict]:
    """TRL DPOTrainer. fast=False: defaults (live reference = the model with its adapter disabled, padded batches);
    fast=True: precompute_ref_log_probs + padding_free. Returns (seconds per step, what the trainer actually ran)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    data = Dataset.from_list([{
        "prompt": tok.decode([t for t, y in zip(x["chosen_input_ids"], x["chosen_labels"]) if y == -100]),
        "chosen": tok.decode([t for t in x["chosen_labels"] if t != -100]),
        "rejected": tok.decode([t for t in x["rejected_labels"] if t != -100]),
    } for x in rows])

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.t = [], 0.0

        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.t)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=lr, beta=0.1,
                         logging_steps=10_000, save_strategy="no", report_to="none", use_cpu=True, max_length=1024,
                         dataloader_num_workers=0, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
                         precompute_ref_log_probs=fast, padding_free=fast)
        trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_path), args=args, train_dataset=data,
                             processing_class=tok, peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"),
                             callbacks=[timer])
        t0 = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - t0
    ran = {"precompute_ref_log_probs": bool(getattr(trainer, "precompute_ref_logps", False)),
           "padding_free_in_effect": bool(getattr(trainer, "padding_free", False)), "train_call_s": total}
    return timer.times, ran


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny:llama")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="steps excluded from the median (allocator, lazy init)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from app.models.loader import resolve_model

    model_path = str(resolve_model(args.model).path)
    tok, rows = make_pairs(args.model, args.pairs)
    torch.manual_seed(0)
    ours, precompute_s = rayalign_steps(model_path, tok, [dict(r) for r in rows], args.batch, args.steps + args.warmup, 5e-4)
    torch.manual_seed(0)
    fast, fast_ran = trl_steps(model_path, tok, rows, args.batch, args.steps + args.warmup, 5e-4, fast=True)
    torch.manual_seed(0)
    theirs, default_ran = trl_steps(model_path, tok, rows, args.batch, args.steps + args.warmup, 5e-4, fast=False)
    med = lambda xs: statistics.median(xs[args.warmup:])  # noqa: E731
    result = {
        "model": args.model, "pairs": args.pairs, "batch": args.batch, "steps_timed": args.steps, "threads": args.threads,
        "rayalign_step_s": med(ours), "trl_step_s": med(theirs), "ratio_rayalign_over_trl": med(ours) / med(theirs),
        "trl_fast_step_s": med(fast), "ratio_rayalign_over_trl_fast": med(ours) / med(fast),
        "trl_fast_config": fast_ran, "trl_default_config": default_ran,
        "rayalign_precompute_once_s": precompute_s,
        "mean_tokens_per_pair": sum(len(r["chosen_input_ids"]) + len(r["rejected_input_ids"]) for r in rows) / len(rows),
    }
    print(json.dumps(result, indent=2))
    print(f"rayalign {result['rayalign_step_s'] * 1e3:.1f} ms/step vs TRL fast {result['trl_fast_step_s'] * 1e3:.1f} ms/step "
          f"(ratio {result['ratio_rayalign_over_trl_fast']:.2f}) and TRL defaults {result['trl_step_s'] * 1e3:.1f} ms/step "
          f"(ratio {result['ratio_rayalign_over_trl']:.2f})")
    out = ROOT / "benchmarks" / "results" / "dpo_step.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(out.read_text()) if out.is_file() else {}
    existing[args.model] = result
    out.write_text(json.dumps(existing, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
