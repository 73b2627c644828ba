"""Learning result: LoRA SFT of SmolLM2-135M-Instruct on GSM8K (CPU budget) vs the base model.

Metric: held-out GSM8K answer perplexity = exp(mean NLL of the reference answer tokens given the chat prompt), on
the first N_EVAL test problems, base vs base+adapter, same tokenization.

    python benchmarks/sft_gsm8k.py [key=value overrides for configs/sft/smollm2_lora_gsm8k.yaml]
    # writes benchmarks/results/sft_gsm8k.json

The packed training artifact is written by a small stand-in packer below (chat template, prompt tokens masked,
greedy packing to max_length, the data contract's columns) until the data area's writer is merged.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config.loader import load_config  # noqa: E402
from app.config.paths import rayalign_home, shared_dir  # noqa: E402
from app.config.sft import SFTConfig  # noqa: E402
from app.models.loader import load_tokenizer, resolve_model  # noqa: E402

N_TRAIN, N_EVAL, MAX_LEN = 1500, 80, 512


def read_jsonl(path: Path, n: int) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def encode(tok, question: str, answer: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels): labels -100 on the prompt, the assistant answer (with <|im_end|>) is learned."""
    prompt = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template([{"role": "user", "content": question}, {"role": "assistant", "content": answer}], tokenize=False)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = tok(full, add_special_tokens=False)["input_ids"]
    return ids, [-100] * len(p_ids) + ids[len(p_ids):]


def write_gsm8k_artifact(out: Path, tok) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (out / "manifest.json").is_file():
        return out
    examples = [encode(tok, r["question"], r["answer"]) for r in read_jsonl(shared_dir() / "data/gsm8k/train.jsonl", N_TRAIN)]
    rows, cur = [], {"input_ids": [], "labels": [], "position_ids": []}
    for ids, labels in examples:
        ids, labels = ids[:MAX_LEN], labels[:MAX_LEN]
        if len(cur["input_ids"]) + len(ids) > MAX_LEN:
            rows.append(cur)
            cur = {"input_ids": [], "labels": [], "position_ids": []}
        cur["input_ids"] += ids
        cur["labels"] += labels
        cur["position_ids"] += list(range(len(ids)))
    rows.append(cur)
    (out / "train").mkdir(parents=True, exist_ok=True)
    table = pa.table({k: pa.array([r[k] for r in rows], type=pa.list_(pa.int32())) for k in ("input_ids", "labels", "position_ids")})
    table = table.append_column("seq_len", pa.array([len(r["input_ids"]) for r in rows], type=pa.int32()))
    pq.write_table(table, out / "train" / "part-00000.parquet")
    tokens = sum(len(r["input_ids"]) for r in rows)
    (out / "manifest.json").write_text(json.dumps({
        "id": f"gsm8k-standin-{N_TRAIN}-{MAX_LEN}", "record_type": "sft", "max_length": MAX_LEN, "splits": {"train": len(rows)},
        "tokens": tokens, "packing_efficiency": tokens / (len(rows) * MAX_LEN)}))
    return out


@torch.no_grad()
def answer_perplexity(model, tok, problems: list[dict]) -> float:
    nll, count = 0.0, 0
    for r in problems:
        ids, labels = encode(tok, r["question"], r["answer"])
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
        target = torch.tensor(labels[1:])
        mask = target != -100
        nll += float(torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum"))
        count += int(mask.sum())
    return math.exp(nll / count)


def main(overrides: list[str]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from app.train.run import run_sft

    torch.set_num_threads(2)
    resolved = resolve_model("bundled:smollm2-135m-instruct")
    tok = load_tokenizer(resolved)
    artifact = write_gsm8k_artifact(rayalign_home() / "datasets" / f"gsm8k-standin-{N_TRAIN}-{MAX_LEN}", tok)
    cfg = load_config(ROOT / "configs/sft/smollm2_lora_gsm8k.yaml", SFTConfig, [f"data.artifact={artifact}", *overrides])
    t0 = time.time()
    outcome = run_sft(cfg)
    train_s = time.time() - t0
    problems = read_jsonl(shared_dir() / "data/gsm8k/test.jsonl", N_EVAL)
    base = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch.float32).eval()
    ppl_base = answer_perplexity(base, tok, problems)
    tuned = PeftModel.from_pretrained(base, str(outcome.output_dir)).eval()
    ppl_tuned = answer_perplexity(tuned, tok, problems)
    hist = outcome.history
    result = {
        "base_model": cfg.model.source, "adapter": str(outcome.output_dir), "steps": outcome.step,
        "train_tokens": sum(h["tokens"] for h in hist), "train_seconds": train_s,
        "train_loss_first": hist[0]["loss"], "train_loss_last": hist[-1]["loss"],
        "heldout_problems": N_EVAL, "answer_ppl_base": ppl_base, "answer_ppl_lora": ppl_tuned,
        "ppl_ratio_lora_over_base": ppl_tuned / ppl_base,
        "config": {"lora_r": cfg.lora.r, "lr": cfg.optim.lr, "grad_accum": cfg.train.grad_accum, "max_length": MAX_LEN},
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results" / "sft_gsm8k.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
