"""Learning result: LoRA SFT of SmolLM2-135M-Instruct on GSM8K (CPU budget) vs the base model.

Metric: held-out GSM8K answer perplexity = exp(mean NLL of the reference answer tokens given the chat prompt), on
the first N_EVAL test problems, base vs base+adapter, same tokenization.

    python benchmarks/sft_gsm8k.py [key=value overrides for configs/sft/smollm2_lora_gsm8k.yaml]
    python benchmarks/sft_gsm8k.py --adapter DIR      # evaluate an already trained adapter only
    # writes benchmarks/results/sft_gsm8k.json; RAYALIGN_EVAL_N sets the number of held-out problems

The training artifact comes from the real ingest pipeline (configs/ingest/smollm2_gsm8k_sft.yaml: GSM8K train,
dedup, contamination drop against GSM8K test, assistant-only labels, packing), written once under
``$RAYALIGN_HOME/datasets``; the held-out problems are tokenized by the same ChatTokenizer.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Ray starts workers at niceness 15 by default; a benchmark must not hand the bare baseline a priority edge.
os.environ.setdefault("RAY_worker_niceness", "0")

from app.config.loader import load_config  # noqa: E402
from app.config.paths import rayalign_home, shared_dir  # noqa: E402
from app.config.sft import SFTConfig  # noqa: E402
from app.models.loader import load_tokenizer, resolve_model  # noqa: E402

N_EVAL = int(os.environ.get("RAYALIGN_EVAL_N", "80"))
INGEST = ROOT / "configs/ingest/smollm2_gsm8k_sft.yaml"


def read_jsonl(path: Path, n: int) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def ingest_gsm8k(out_root: Path):
    """GSM8K train → packed SFT artifact through the real ingest pipeline (``INGEST``): validation, exact + near
    dedup, contamination drop against GSM8K test, chat-template tokenization, ``pack_sequences``. Reused when the
    folder already holds it (same input and settings → same artifact id)."""
    import ray

    from app.config.ingest import IngestConfig
    from app.data.artifact import load_artifact
    from app.data.pipeline import run_ingest
    from app.launch.runtime import init_ray

    cfg = load_config(INGEST, IngestConfig, [])
    if (out_root / cfg.name / "manifest.json").is_file():
        return load_artifact(out_root / cfg.name)
    init_ray(cfg.ray)
    try:
        return run_ingest(cfg, out_dir=out_root, progress=False)
    finally:
        ray.shutdown()


@torch.no_grad()
def answer_perplexity(model, chat, problems: list[dict]) -> float:
    """exp(mean NLL of the answer tokens), tokenized exactly as ingest does (labels -100 outside the answer)."""
    from app.data.records import normalize

    nll, count = 0.0, 0
    for r in problems:
        enc = chat.sft(normalize(r, "sft", "gsm8k"))
        logits = model(input_ids=torch.tensor([enc["input_ids"]]), use_cache=False).logits[0, :-1].float()
        target = torch.tensor(enc["labels"][1:])
        mask = target != -100
        nll += float(torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum"))
        count += int(mask.sum())
    return math.exp(nll / count)


def main(overrides: list[str]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from app.launch.run import run_sft

    torch.set_num_threads(2)
    from app.data.tokenization import ChatTokenizer

    resolved = resolve_model("bundled:smollm2-135m-instruct")
    t0 = time.time()
    artifact = ingest_gsm8k(rayalign_home() / "datasets")
    ingest_s = time.time() - t0
    chat = ChatTokenizer(load_tokenizer(resolved), artifact.manifest["max_length"])
    adapter_only = overrides[:1] == ["--adapter"]
    cfg = load_config(ROOT / "configs/sft/smollm2_lora_gsm8k.yaml", SFTConfig,
                      [f"data.artifact={artifact.path}", *([] if adapter_only else overrides)])
    if adapter_only:
        adapter_dir = Path(overrides[1])
        hist = []
    else:
        outcome = run_sft(cfg)
        adapter_dir, hist = outcome.output_dir, outcome.history
        (adapter_dir / "train_history.json").write_text(json.dumps(hist))
    problems = read_jsonl(shared_dir() / "data/gsm8k/test.jsonl", N_EVAL)
    base = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch.float32).eval()
    ppl_base = answer_perplexity(base, chat, problems)
    tuned = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    ppl_tuned = answer_perplexity(tuned, chat, problems)
    if adapter_only:  # the history of the run that wrote the adapter: its newest checkpoint manifest
        manifests = [json.loads(p.read_text()) for p in adapter_dir.parent.glob("checkpoint_*/rayalign_checkpoint.json")]
        hist = max(manifests, key=lambda m: m["step"])["state"]["history"] if manifests else []
    lineage = json.loads((adapter_dir / "rayalign_lineage.json").read_text())
    result = {
        "base_model": cfg.model.source, "adapter": str(adapter_dir), "steps": lineage["metrics"]["steps"],
        "train_tokens": sum(h["tokens"] for h in hist) if hist else None,
        "train_seconds_per_step": (hist[-1]["wall_start"] - hist[0]["wall_start"]) / max(1, len(hist) - 1) if hist else None,
        "train_loss_first": hist[0]["loss"] if hist else None, "train_loss_last": lineage["metrics"]["final_loss"],
        "heldout_problems": N_EVAL, "answer_ppl_base": ppl_base, "answer_ppl_lora": ppl_tuned,
        "ppl_ratio_lora_over_base": ppl_tuned / ppl_base,
        "config_hash": lineage["config_hash"], "lora": lineage["lora"],
        "dataset": {k: artifact.manifest.get(k) for k in ("id", "max_length", "rows_read", "rows_accepted",
                                                          "contaminated_dropped", "tokens", "packing_efficiency",
                                                          "splits")},
        "ingest_s": ingest_s, "windows_per_step": cfg.train.micro_batch_size * cfg.train.grad_accum,
        "lr_schedule": [h["lr"] for h in hist],
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results" / "sft_gsm8k.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
