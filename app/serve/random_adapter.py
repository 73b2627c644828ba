"""Write real peft LoRA adapters with seeded random, non-zero B matrices: distinct outputs per adapter, no training.

Used by the serve tests, the multi-LoRA benchmark and ``rayalign serve --demo-adapters``. The folder is the
platform's adapter contract: peft ``save_pretrained`` layout (loadable by peft and vLLM) plus
``rayalign_lineage.json`` carrying the base weights' SHA so Serve can refuse it on a different base.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def write_random_adapter(
    base_dir: str | Path,
    out_dir: str | Path,
    seed: int,
    *,
    r: int = 8,
    alpha: int = 16,
    std: float = 0.05,
    target_modules: tuple[str, ...] = DEFAULT_TARGETS,
    base_source: str | None = None,
    base_sha: str | None = None,
) -> Path:
    """Save a LoRA adapter for the model in ``base_dir`` with A ~ kaiming (peft init) and B ~ N(0, std²), seeded.

    The base model is built on the meta device (no weights are read), so this costs well under a second even for
    SmolLM2; only the LoRA tensors (A: [r, in], B: [out, r] per target module) are materialized and saved.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from app.models.loader import base_sha as compute_base_sha

    base_dir, out = Path(base_dir), Path(out_dir)
    config = AutoConfig.from_pretrained(base_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    lora = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    gen = torch.Generator().manual_seed(seed)
    for name, module in peft_model.named_modules():
        if name.endswith(("lora_A.default", "lora_B.default")):
            out_f, in_f = module.weight.shape
            if name.endswith("lora_A.default"):
                weight = (torch.rand(out_f, in_f, generator=gen) * 2 - 1) / in_f**0.5
            else:
                weight = torch.randn(out_f, in_f, generator=gen) * std
            module.weight = torch.nn.Parameter(weight)
    peft_model.peft_config["default"].base_model_name_or_path = str(base_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out)
    lineage = {
        "base_model_source": base_source or str(base_dir),
        "base_sha": base_sha or compute_base_sha(base_dir),
        "dataset_id": "none:random-init",
        "config_hash": f"random-seed-{seed}",
        "method": "random-lora",
        "lora": {"r": r, "alpha": alpha, "target_modules": list(target_modules)},
        "metrics": {},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "rayalign_lineage.json").write_text(json.dumps(lineage, indent=2), encoding="utf-8")
    return out


def write_demo_adapters(base_dir: str | Path, root: str, tenant: str, count: int, *,
                        base_source: str | None = None) -> list[str]:
    """``count`` random adapters ``demo-0..`` for ``tenant`` under the adapter ``root``: a folder, or an object-store
    prefix (``s3://bucket/adapters``), where each is written to a temporary folder and uploaded (the same copy as a
    finished run's output, ``app.launch.storage.upload_folder``). Returns their URIs."""
    from app.serve.adapter_store import is_remote

    if not is_remote(root):
        return [str(write_random_adapter(base_dir, f"{root.removeprefix('file://')}/{tenant}/demo-{i}", seed=i,
                                         base_source=base_source)) for i in range(count)]
    import tempfile

    from app.launch.storage import upload_folder
    from app.models.loader import base_sha

    sha, uris = base_sha(base_dir), []
    with tempfile.TemporaryDirectory(prefix="rayalign-demo-adapters-") as tmp:
        for i in range(count):
            folder = write_random_adapter(base_dir, Path(tmp) / f"demo-{i}", seed=i, base_source=base_source, base_sha=sha)
            uris.append(upload_folder(folder, f"{root.rstrip('/')}/{tenant}/demo-{i}"))
    return uris
