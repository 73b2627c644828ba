"""Fixtures for preference tests: a small learnable preference artifact tokenized for the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.data.synthetic import synthetic_pairs, tokenize_pair, write_preference_artifact  # noqa: F401 - tests import them from here


@pytest.fixture()
def tiny_preference_artifact(tmp_path, tiny_model_dir) -> Path:
    """A fresh (per test: precompute mutates it) 48/16-pair preference artifact for the tiny model."""
    from app.models.loader import load_tokenizer

    return write_preference_artifact(tmp_path / "pref-artifact", load_tokenizer(str(tiny_model_dir)), 48, 16)
