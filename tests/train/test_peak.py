"""The MFU denominator comes from the hardware: a measured CPU matmul peak (cached per CPU model and thread count),
the GPU datasheet table by device name, or the config's explicit override."""

from __future__ import annotations

import json

import torch

from app.train.peak import CACHE_FILE, cached_cpu_peak, hardware_peak_flops, measure_matmul_flops


def test_cpu_peak_is_measured_once_then_cached(rayalign_home):
    (rayalign_home / CACHE_FILE).unlink(missing_ok=True)
    first = cached_cpu_peak(n=256)
    assert 1e8 < first < 1e14  # a real CPU: between 0.1 GFLOP/s and 100 TFLOP/s
    cache = json.loads((rayalign_home / CACHE_FILE).read_text())
    (key,) = [k for k in cache if k.endswith("n=256")]
    cache[key] = 123.0  # a later call reads the cache instead of measuring
    (rayalign_home / CACHE_FILE).write_text(json.dumps(cache))
    assert cached_cpu_peak(n=256) == 123.0
    (rayalign_home / CACHE_FILE).unlink()


def test_override_wins_and_cpu_falls_back_to_measurement(rayalign_home):
    assert hardware_peak_flops(torch.device("cpu"), False, 5e12) == (5e12, "config output.peak_flops")
    peak, source = hardware_peak_flops(torch.device("cpu"), False)
    assert peak > 0 and "measured" in source
    assert measure_matmul_flops(torch.device("cpu"), n=64, repeats=2) > 0
