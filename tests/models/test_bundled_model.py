"""The real SmolLM2-135M-Instruct loads from its GGUF, answers coherently, and has a stable weights SHA."""

from __future__ import annotations

import json

import pytest
import torch

from app.models.bundled import convert_gguf_to_hf, find_bundled_gguf
from app.models.loader import load_model, load_tokenizer, resolve_model
from app.models.weights_sha import compute_weights_sha

pytestmark = pytest.mark.slow


def test_bundled_model_answers_a_chat_prompt(shared):
    resolved = resolve_model("bundled:smollm2-135m-instruct")
    tok, model = load_tokenizer(resolved), load_model(resolved)
    assert model.config.model_type == "llama" and model.num_parameters() == pytest.approx(134.5e6, rel=0.01)
    batch = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=20, do_sample=False)
    reply = tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply


def test_base_sha_is_stable_across_two_independent_conversions(shared, tmp_path):
    cached = resolve_model("bundled:smollm2-135m-instruct").path
    fresh = convert_gguf_to_hf(find_bundled_gguf("smollm2-135m-instruct"), tmp_path / "again")
    assert compute_weights_sha(fresh) == compute_weights_sha(cached)
    config = json.loads((fresh / "config.json").read_text())
    assert "quantization_config" not in config, "a dequantized folder must not claim to be GGUF-quantized (vLLM refuses it)"
