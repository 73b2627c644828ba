"""benchmarks/gpu_check.py on CPU: the dry run builds and validates every section's config and starts nothing."""

from __future__ import annotations

import json

import pytest

from app.config.paths import REPO_ROOT


@pytest.fixture(scope="module")
def gpu_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_validates_every_section(gpu_check, tmp_path, shared):
    out = tmp_path / "dry.json"
    assert gpu_check.main(["--dry-run", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["dry_run"] is True
    assert set(doc["sections"]) == {name for name, _ in gpu_check.SECTIONS} >= {
        "sft_lora_bf16", "qlora_step", "fsdp2_step", "dpo_step", "serve_multilora", "ppo_grpo_vllm"}
    assert all(s["status"] == "validated" for s in doc["sections"].values())
    assert doc["sections"]["ppo_grpo_vllm"]["runs"][0] == "configs/ppo/smollm2_gsm8k_grpo_vllm_gpu.yaml"
    assert doc["sections"]["sft_lora_bf16"]["runs"][0] == "configs/sft/smollm2_lora_gsm8k_gpu.yaml"
    assert not (REPO_ROOT / "benchmarks" / "results" / "gpu_check.json").is_file() or "dry_run" not in (
        REPO_ROOT / "benchmarks" / "results" / "gpu_check.json").read_text()  # a dry run never overwrites GPU numbers


def test_a_bad_section_config_fails_the_dry_run(gpu_check, monkeypatch, shared):
    from app.config.errors import ConfigError

    monkeypatch.setitem(gpu_check.SFT_VARIANTS, "qlora_step", ["method=qlora", "strategy.kind=fsdp2"])
    with pytest.raises(ConfigError, match="qlora.*fsdp2"):
        gpu_check.main(["--dry-run"])


@pytest.mark.parametrize("device, gpu", [
    ("NVIDIA H200", "H200"), ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
    ("NVIDIA A100-SXM4-40GB", "A100"), ("NVIDIA L40S", "L40S"), ("NVIDIA L4", "L4"), ("NVIDIA A10G", "A10G"),
])
def test_mfu_peak_follows_the_device_name(gpu_check, device, gpu):
    from app.plan.gpus import CATALOG

    assert gpu_check.gpu_for_device_name(device) == (gpu, CATALOG[gpu].bf16_tflops * 1e12)


def test_without_cuda_a_real_run_refuses(gpu_check, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_check.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err
