from __future__ import annotations

import torch
from safetensors.torch import save_file

from app.models.loader import base_sha
from app.models.weights_sha import compute_weights_sha


def test_sha_ignores_sharding_but_sees_every_value(tmp_path):
    t = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b.bias": torch.ones(4)}
    one, two, changed = tmp_path / "one", tmp_path / "two", tmp_path / "changed"
    for d in (one, two, changed):
        d.mkdir()
    save_file(t, one / "model.safetensors")
    save_file({"b.bias": t["b.bias"]}, two / "model-00001.safetensors")
    save_file({"a.weight": t["a.weight"]}, two / "model-00002.safetensors")
    bumped = dict(t, **{"b.bias": torch.tensor([1.0, 1.0, 1.0, 1.0 + 1e-6])})
    save_file(bumped, changed / "model.safetensors")
    assert compute_weights_sha(one) == compute_weights_sha(two)
    assert compute_weights_sha(one) != compute_weights_sha(changed)


def test_cached_sha_is_invalidated_when_weights_change(tmp_path):
    save_file({"w": torch.zeros(3)}, tmp_path / "model.safetensors")
    first = base_sha(tmp_path)
    assert base_sha(tmp_path) == first
    save_file({"w": torch.ones(3)}, tmp_path / "model.safetensors")
    assert base_sha(tmp_path) != first
