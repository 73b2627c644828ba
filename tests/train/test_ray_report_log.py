"""Ray Train's per-report INFO line is dropped in a worker unless asked for (app/train/reporting.py), and the driver
asks for it under ``-v`` (app/launch/trainer.py::worker_env)."""

from __future__ import annotations

import inspect
import logging

import pytest

from app.train.reporting import RAY_REPORT_LOG_ENV, quiet_ray_report_log


@pytest.fixture
def report_logger():
    from ray.train.v2._internal.execution import context

    level = context.logger.level
    yield context
    context.logger.setLevel(level)


def test_the_report_line_comes_from_the_logger_that_is_quieted(report_logger):
    # the INFO line is logged in _wait_then_report through this module's logger (named by file path, not ray.train)
    source = inspect.getsource(report_logger.TrainContext._wait_then_report)
    assert "logger.info(" in source and "Reporting training result" in source
    assert not report_logger.logger.name.startswith("ray.train")


def test_report_line_dropped_by_default_warnings_kept(report_logger, monkeypatch):
    monkeypatch.delenv(RAY_REPORT_LOG_ENV, raising=False)
    report_logger.logger.setLevel(logging.NOTSET)
    assert quiet_ray_report_log() is True
    assert not report_logger.logger.isEnabledFor(logging.INFO)
    assert report_logger.logger.isEnabledFor(logging.WARNING)


def test_report_line_kept_when_asked(report_logger, monkeypatch):
    monkeypatch.setenv(RAY_REPORT_LOG_ENV, "1")
    report_logger.logger.setLevel(logging.NOTSET)
    assert quiet_ray_report_log() is False
    assert report_logger.logger.level == logging.NOTSET
