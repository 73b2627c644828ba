from __future__ import annotations

import torch

from app.models.loader import load_model, load_tokenizer, resolve_model
from app.models.tiny import build_tiny_model


def test_tiny_model_is_deterministic_and_chat_ready(tmp_path, tiny_model_dir):
    other = build_tiny_model(tmp_path / "again")
    a, b = load_model(str(tiny_model_dir)), load_model(str(other))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    tok = load_tokenizer(str(tiny_model_dir))
    text = tok.apply_chat_template([{"role": "user", "content": "how many apples?"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhow many apples?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, return_tensors="pt").input_ids
    assert tok.decode(ids[0]) == text  # byte-level BPE round-trips exactly
    out = a(input_ids=ids, labels=ids)
    assert out.logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(out.loss)


def test_tiny_source_resolves_and_has_stable_sha(tiny_model_dir):
    r1, r2 = resolve_model("tiny:llama"), resolve_model("tiny:llama")
    assert r1.path == r2.path == tiny_model_dir
    assert r1.base_sha == r2.base_sha and len(r1.base_sha) == 64
