"""The MFU denominator comes from the hardware: a measured CPU matmul peak (cached per CPU model and thread count),
the GPU datasheet table by device name, or the config's explicit override."""

from __future__ import annotations

import json

import torch

from app.train.peak import CACHE_FILE, cached_cpu_peak, hardware_peak_flops, measure_matmul_flops


def test_cpu_peak_keeps_the_highest_measurement(rayalign_home):
    """A low first figure (measured under contention) is replaced by a later, higher one; a higher cached figure is
    kept over a lower fresh measurement. Before, the first measurement was cached for good (2-thread peaks of 42-191
    GFLOP/s on one machine), and MFU against a too-low peak read 1.0 after clipping."""
    (rayalign_home / CACHE_FILE).unlink(missing_ok=True)
    first = cached_cpu_peak(n=256)
    assert 1e8 < first < 1e14  # a real CPU: between 0.1 GFLOP/s and 100 TFLOP/s
    cache = json.loads((rayalign_home / CACHE_FILE).read_text())
    (key,) = [k for k in cache if k.endswith("n=256")]
    assert cache[key] == first
    cache[key] = 123.0  # a contended first measurement: far below any real CPU
    (rayalign_home / CACHE_FILE).write_text(json.dumps(cache))
    again = cached_cpu_peak(n=256)
    assert again > 1e8 and json.loads((rayalign_home / CACHE_FILE).read_text())[key] == again
    cache[key] = 1e14  # higher than this CPU can measure: kept
    (rayalign_home / CACHE_FILE).write_text(json.dumps(cache))
    assert cached_cpu_peak(n=256) == 1e14
    (rayalign_home / CACHE_FILE).unlink()


def test_override_wins_and_cpu_falls_back_to_measurement(rayalign_home):
    assert hardware_peak_flops(torch.device("cpu"), False, 5e12) == (5e12, "config output.peak_flops")
    peak, source = hardware_peak_flops(torch.device("cpu"), False)
    assert peak > 0 and "measured" in source
    assert measure_matmul_flops(torch.device("cpu"), n=64, repeats=2) > 0


def test_measuring_the_peak_leaves_the_global_rng_alone():
    """The worker measures right after seeding; the LoRA/head initialisation that follows must not depend on it."""
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    measure_matmul_flops(torch.device("cpu"), n=64, repeats=1)
    assert torch.equal(torch.rand(3), expected)
