"""PPO test fixtures: a small GSM8K-style prompt file and a tiny-model PPO config pointing at it."""

from __future__ import annotations

import json

import pytest

from app.config.loader import load_config
from app.config.paths import REPO_ROOT


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "math.jsonl"
    rows = [{"question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
             "answer": f"{a} + {b} = {a + b}\n#### {a + b}"} for a in range(1, 9) for b in (2, 5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny_cfg(prompt_file, tmp_path, tiny_model_dir):
    """Load a configs/tiny/ppo_*.yaml twin with the test prompts and a per-test run folder."""
    from app.config.ppo import PPOConfig

    def load(name: str, *overrides: str):
        return load_config(REPO_ROOT / "configs" / "tiny" / name, PPOConfig,
                           [f"prompts.path={prompt_file}", f"run.output_dir={tmp_path / 'run'}", *overrides])

    return load
