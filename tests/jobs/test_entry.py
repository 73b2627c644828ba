"""Every Ray job entrypoint: a user mistake is one line and exit 2; inside `ray job submit` it joins that cluster."""

from __future__ import annotations

import importlib

import pytest

from app.launch.runtime import resolve_address

JOBS = ["dpo", "eval", "ingest", "pipeline", "ppo", "reward", "serve", "sft", "tune"]


@pytest.mark.parametrize("job", JOBS)
def test_missing_config_is_one_line_and_exit_2(job, tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    rc = importlib.import_module(f"jobs.{job}").main(["--config", str(missing)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [f"jobs.{job}: error: config file not found: {missing}"]


@pytest.mark.parametrize("job", ["sft", "dpo", "pipeline"])
def test_unknown_key_names_the_key(job, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("no_such_key: 1\n")
    assert importlib.import_module(f"jobs.{job}").main(["--config", str(cfg)]) == 2
    assert "no_such_key" in capsys.readouterr().err


def test_local_means_the_submitting_cluster_only_inside_a_ray_job(monkeypatch):
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")  # a user's shell pointing `ray job submit` somewhere
    assert resolve_address("local") == "local"  # a plain run starts its own private cluster
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # set by Ray's job supervisor for a job's driver
    assert resolve_address("local") == "auto"
    assert resolve_address("10.0.0.5:6379") == "10.0.0.5:6379"  # an explicit address is never overridden


VERBS = {"dpo": "dpo", "eval": "eval", "ingest": "ingest", "pipeline": "pipeline", "ppo": "ppo", "reward": "reward",
         "serve": "serve", "sft": "train", "tune": "tune"}


def _flags(parser) -> set[str]:
    sub = next(a for a in parser._subparsers._group_actions).choices
    (verb_parser,) = sub.values()
    return {opt for action in verb_parser._actions for opt in (action.option_strings or [action.dest])}


@pytest.mark.parametrize("job", JOBS)
def test_job_and_cli_verb_accept_the_same_flags(job, capsys):
    """`python -m jobs.X` is `rayalign X`: the same argument parser, and -h shows the job's own name."""
    from app.cli import build_parser

    verb = VERBS[job]
    assert _flags(build_parser(only=verb)) >= {"--config", "overrides"}
    with pytest.raises(SystemExit):
        importlib.import_module(f"jobs.{job}").main(["-h"])
    help_text = capsys.readouterr().out
    assert help_text.startswith(f"usage: python -m jobs.{job}")
    for flag in _flags(build_parser(only=verb)) - {"overrides", "help", "-h", "--help"}:
        assert flag in help_text, f"jobs.{job} lacks {flag} of rayalign {verb}"


def test_dpo_job_has_precompute_only(capsys):
    with pytest.raises(SystemExit):
        importlib.import_module("jobs.dpo").main(["-h"])
    assert "--precompute-only" in capsys.readouterr().out
