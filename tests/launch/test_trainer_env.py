"""Training workers run the train function in a thread (Ray Train V2); their processes get MALLOC_ARENA_MAX so that
thread allocates from the main malloc arena (app/launch/trainer.py::worker_env, measured in train_overhead.py)."""

from __future__ import annotations

from app.config.common import ScalingSpec
from app.launch.trainer import build_trainer


def test_workers_get_one_malloc_arena_unless_the_driver_sets_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    trainer = build_trainer(lambda config: None, {}, ScalingSpec(), "env-test", str(tmp_path))
    assert trainer.run_config.worker_runtime_env["env_vars"]["MALLOC_ARENA_MAX"] == "1"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    trainer = build_trainer(lambda config: None, {}, ScalingSpec(), "env-test", str(tmp_path))
    assert trainer.run_config.worker_runtime_env["env_vars"]["MALLOC_ARENA_MAX"] == "4"
