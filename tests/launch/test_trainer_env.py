"""Environment the trainer builder sets (app/launch/trainer.py): the workers' MALLOC_ARENA_MAX (``worker_env``), and the
Ray Train controller's poll interval (``controller_poll_interval``: a report waits for the next poll)."""

from __future__ import annotations

from app.config.common import ScalingSpec
from app.launch.trainer import CONTROLLER_POLL_ENV, build_trainer


def test_workers_get_one_malloc_arena_unless_the_driver_sets_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    trainer = build_trainer(lambda config: None, {}, ScalingSpec(), "env-test", str(tmp_path))
    assert trainer.run_config.worker_runtime_env["env_vars"]["MALLOC_ARENA_MAX"] == "1"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    trainer = build_trainer(lambda config: None, {}, ScalingSpec(), "env-test", str(tmp_path))
    assert trainer.run_config.worker_runtime_env["env_vars"]["MALLOC_ARENA_MAX"] == "4"


def test_controller_polls_every_half_second_unless_the_driver_sets_it(tmp_path, monkeypatch):
    monkeypatch.setenv(CONTROLLER_POLL_ENV, "x")  # recorded, so the test's own setting is undone afterwards
    monkeypatch.delenv(CONTROLLER_POLL_ENV)
    build_trainer(lambda config: None, {}, ScalingSpec(), "env-test", str(tmp_path))
    from ray.train.v2._internal.constants import get_env_vars_to_propagate

    assert get_env_vars_to_propagate()[CONTROLLER_POLL_ENV] == "0.5"  # what fit() hands the controller
    monkeypatch.setenv(CONTROLLER_POLL_ENV, "3")
    build_trainer(lambda config: None, {}, ScalingSpec(), "env-test", str(tmp_path))
    assert get_env_vars_to_propagate()[CONTROLLER_POLL_ENV] == "3"


def test_workers_get_the_helper_thread_niceness_unless_the_driver_sets_it(tmp_path, monkeypatch):
    from app.train.cpu_priority import HELPER_NICE_ENV

    monkeypatch.delenv(HELPER_NICE_ENV, raising=False)
    trainer = build_trainer(lambda config: None, {}, ScalingSpec(), "env-test", str(tmp_path))
    assert trainer.run_config.worker_runtime_env["env_vars"][HELPER_NICE_ENV] == "19"
    monkeypatch.setenv(HELPER_NICE_ENV, "0")
    trainer = build_trainer(lambda config: None, {}, ScalingSpec(), "env-test", str(tmp_path))
    assert trainer.run_config.worker_runtime_env["env_vars"][HELPER_NICE_ENV] == "0"


def test_workers_keep_ray_trains_report_line_only_under_verbose_or_when_the_driver_says(tmp_path, monkeypatch):
    import logging

    from app.train.reporting import RAY_REPORT_LOG_ENV

    monkeypatch.delenv(RAY_REPORT_LOG_ENV, raising=False)
    root = logging.getLogger()
    level = root.level
    env = lambda: build_trainer(lambda config: None, {}, ScalingSpec(), "env-test", str(tmp_path)).run_config.worker_runtime_env["env_vars"]  # noqa: E731
    try:
        root.setLevel(logging.INFO)  # the quiet console's level
        assert env()[RAY_REPORT_LOG_ENV] == "0"
        root.setLevel(logging.DEBUG)  # rayalign -v
        assert env()[RAY_REPORT_LOG_ENV] == "1"
        monkeypatch.setenv(RAY_REPORT_LOG_ENV, "0")
        assert env()[RAY_REPORT_LOG_ENV] == "0"
    finally:
        root.setLevel(level)
