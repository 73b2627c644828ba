from __future__ import annotations

import pytest

from app.models.loader import ModelLoadError, resolve_model


def test_missing_local_path_is_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="model path not found"):
        resolve_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "x.gguf"))
    with pytest.raises(ModelLoadError, match="unknown bundled model"):
        resolve_model("bundled:gpt-17")


def test_hub_id_offline_fails_with_actionable_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not fetch 'someone/some-model'.*bundled:smollm2-135m-instruct"):
        resolve_model("someone/some-model")
