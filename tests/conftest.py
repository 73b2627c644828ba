"""Shared fixtures: a real local Ray cluster, a tiny random Llama folder, the shared real assets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYALIGN_DASHBOARD", "0")  # tests start many short clusters; the dashboard only costs time there


def pytest_collection_modifyitems(config, items):
    import importlib.util

    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_cuda = torch.cuda.is_available()
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU (run with -m gpu on the device machine)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def rayalign_home(tmp_path_factory) -> Path:
    """Each test session gets its own rayalign home (runs, DBs), but reuses the converted-model cache."""
    home = tmp_path_factory.mktemp("rayalign_home")
    os.environ["RAYALIGN_HOME"] = str(home)
    cache = Path(os.environ.get("RAYALIGN_MODEL_CACHE", Path(__file__).resolve().parents[1] / ".rayalign" / "models"))
    cache.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(cache, target_is_directory=True)
    return home


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared real model + data folder; tests that need it skip with a clear reason where it is absent."""
    from app.config.paths import shared_dir

    path = shared_dir()
    if path is None:
        pytest.skip("../shared (real SmolLM2 + GSM8K/HH-RLHF) is absent on this machine")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(rayalign_home) -> Path:
    """A tiny random Llama + ChatML tokenizer on disk (built once per session)."""
    from app.models.loader import resolve_model

    return resolve_model("tiny:llama").path


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster (2 CPUs), shared by the session's ray tests."""
    import ray

    from app.config.common import RaySpec
    from app.launch.runtime import init_ray

    for attempt in range(3):  # Ray's raylet has a fixed start-up window that a saturated machine can miss
        try:
            init_ray(RaySpec(address="local", num_cpus=2))
            break
        except Exception:  # noqa: BLE001 - retried, then re-raised
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray
    ray.shutdown()
