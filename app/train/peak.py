"""Peak FLOP/s of the hardware a training worker runs on: the MFU denominator (never a guessed constant).

GPU: the datasheet peak of the device by name and compute dtype (app/core/flops.py ``GPU_PEAK_TFLOPS``).
CPU: measured at every worker start — the best of a few fp32 [n, n] matmuls with the worker's torch threads — and the
highest figure so far is kept in ``<rayalign home>/peak_flops.json`` per (CPU model, threads, n): contention only
ever lowers a measurement, so the maximum converges on the cores' real peak.
An unknown GPU falls back to the same measurement on that GPU. ``output.peak_flops`` overrides all of it.
"""

from __future__ import annotations

import json
import logging
import platform
import time

import torch

from app.core.flops import gpu_peak_flops, matmul_flops

log = logging.getLogger(__name__)
CACHE_FILE = "peak_flops.json"


def measure_matmul_flops(device: torch.device, n: int = 1024, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best achieved FLOP/s of ``repeats`` [n, n] @ [n, n] matmuls on ``device`` (after one warm-up).

    The operands come from a private generator: the training worker measures right after seeding, and drawing from
    the global RNG would change the LoRA/head initialisation that follows."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return matmul_flops(n) / best


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cached_cpu_peak(n: int = 1024) -> float:
    """The CPU matmul peak for this CPU model and torch thread count: the highest of every measurement so far.

    Each call measures again (six [n, n] matmuls, ~0.1 s at n=1024) and keeps the maximum in the cache. Contention
    (another rank, test or process on the same cores) can only lower a measurement, never raise it, so a first figure
    taken under contention must not pin every later MFU: when the first measurement was kept for good, this machine's
    caches held 2-thread peaks from 42 to 191 GFLOP/s (one below the 1-thread figure of the same cache), and a DPO run
    measured against 42 logged MFU 1.0 after clipping.
    """
    from app.config.paths import rayalign_home

    key = f"{cpu_name()}|threads={torch.get_num_threads()}|n={n}"
    path = rayalign_home() / CACHE_FILE
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    measured = measure_matmul_flops(torch.device("cpu"), n)
    if measured <= float(cache.get(key, 0.0)):
        return float(cache[key])
    cache[key] = measured
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(cache)}")
        tmp.write_text(json.dumps(cache, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:  # a read-only home only loses the maximum for next time
        log.warning("could not cache the CPU peak in %s: %s", path, exc)
    return measured


def hardware_peak_flops(device: torch.device, bf16: bool, override: float | None = None) -> tuple[float, str]:
    """(peak FLOP/s of one worker, where it came from): the override, the GPU table, or a measured matmul."""
    if override:
        return override, "config output.peak_flops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = gpu_peak_flops(name, "bfloat16" if bf16 else "float32")
        if peak is not None:
            return peak, f"datasheet {name} {'bf16' if bf16 else 'fp32'}"
        return measure_matmul_flops(device, 4096, dtype=torch.bfloat16 if bf16 else torch.float32), f"measured matmul on {name}"
    return cached_cpu_peak(), f"measured fp32 matmul on {torch.get_num_threads()} CPU thread(s)"
