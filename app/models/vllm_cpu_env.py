"""Process environment for vLLM's CPU backend, shared by the Serve engine and the PPO rollout engine.

vLLM reads ``VLLM_CPU_KVCACHE_SPACE`` and ``VLLM_CPU_OMP_THREADS_BIND`` when the engine starts, so they are set in the
engine's own process (a Ray actor / Serve replica) before ``vllm`` is imported. Both are ``setdefault``: an operator's
explicit environment wins. Measured on the 2-core dev box (benchmarks/serve_multilora.py): vLLM's ``auto`` binding
left the model on one core; binding every allowed CPU was 1.32x faster (57.0 vs 43.2 tok/s offline).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def omp_threads_bind(setting: str) -> str:
    """The ``VLLM_CPU_OMP_THREADS_BIND`` value for ``setting``: ``"all"`` becomes every CPU this process may run on
    (``"0,1"`` on a 2-core box); anything else (``"auto"``, ``"nobind"``, ``"0-3"``) is passed to vLLM unchanged."""
    if setting != "all":
        return setting
    return ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))


def set_vllm_cpu_env(kv_cache_gib: int, threads_bind: str) -> None:
    """Set vLLM's CPU-backend variables in this process unless already set (no effect on the CUDA backend)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", omp_threads_bind(threads_bind))


def vllm_model_dir(model_dir: Path, views_root: Path) -> Path:
    """A folder vLLM can load: ``model_dir`` itself, or a view with a cleaned config.json when it carries a stale
    ``quantization_config`` (left by a GGUF → safetensors conversion; the weights are already dequantized)."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    if "quantization_config" not in config or any(model_dir.glob("*.gguf")):
        return model_dir
    config.pop("quantization_config")
    view = Path(views_root) / model_dir.name
    view.mkdir(parents=True, exist_ok=True)
    for item in model_dir.iterdir():
        link = view / item.name
        if item.name != "config.json" and not link.exists():
            link.symlink_to(item.resolve())
    (view / "config.json").write_text(json.dumps(config, indent=2))
    return view
