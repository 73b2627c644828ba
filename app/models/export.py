"""Merge a LoRA adapter into its base model for full-model serving, and check the merge changed nothing.

``merge_adapter(adapter_dir, out_dir)`` loads the base named in the adapter's lineage (or peft config), merges
(W + alpha/r · B·A), saves an HF folder with the tokenizer and a lineage copy, then compares logits of the merged
model and the unmerged peft model on a probe batch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from app.models.adapter import LINEAGE, read_lineage


def _base_source(adapter_dir: Path) -> str:
    if (adapter_dir / LINEAGE).is_file():
        return read_lineage(adapter_dir)["base_model_source"]
    return json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_source: str | None = None, atol: float = 1e-4) -> dict:
    """Write the merged full model to ``out_dir``; returns {"max_abs_diff", "equal", "out_dir"} from the probe check."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from app.models.loader import load_tokenizer, resolve_model

    adapter_dir, out = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json (not a peft adapter folder)")
    resolved = resolve_model(base_source or _base_source(adapter_dir))
    base = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    tok = load_tokenizer(resolved)
    probe = tok(["Natalia sold clips to 48 of her friends.", "What is 12 + 30?"], return_tensors="pt", padding=True)
    with torch.no_grad():
        unmerged = peft_model(**probe).logits
        merged_model = peft_model.merge_and_unload()
        merged = merged_model(**probe).logits
    diff = float((merged - unmerged).abs().max())
    if out.exists():
        shutil.rmtree(out)
    merged_model.save_pretrained(out)
    tok.save_pretrained(out)
    if (adapter_dir / LINEAGE).is_file():
        lineage = read_lineage(adapter_dir)
        lineage["merged_from_adapter"] = str(adapter_dir)
        (out / LINEAGE).write_text(json.dumps(lineage, indent=2), encoding="utf-8")
    return {"max_abs_diff": diff, "equal": diff <= atol, "out_dir": str(out)}
