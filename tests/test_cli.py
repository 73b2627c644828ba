"""The CLI as a user meets it: useful help, one-line errors, no traceback spam."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from app.cli import VERBS, available_verbs, build_parser


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_exactly_the_verbs_that_exist():
    help_text = build_parser().format_help()
    for verb, module in VERBS.items():
        exists = importlib.util.find_spec(f"app.commands.{module}") is not None
        assert (verb in available_verbs()) == exists
        if exists:
            assert verb in help_text


def test_missing_config_file_is_one_line():
    out = run_cli("config", "configs/does/not/exist.yaml")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "config file not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_key_and_bad_type_name_the_key_and_file(tmp_path):
    root = tmp_path / "configs"
    folder = root / "plan"
    folder.mkdir(parents=True)
    if importlib.util.find_spec("app.config.plan") is None:
        import pytest

        pytest.skip("needs a registered schema module (app.config.plan) to exercise the CLI path")
    bad = folder / "typo.yaml"
    bad.write_text("no_such_key: 1\n")
    out = run_cli("config", str(bad), "--configs-root", str(root))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unknown key 'no_such_key'" in out.stderr and str(bad) in out.stderr
