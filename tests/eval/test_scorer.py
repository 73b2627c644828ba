"""AdapterScorer: chunked, length-sorted generation and the merged adapter give the same answers (tiny model, no Ray)."""

from __future__ import annotations

import pytest

from app.eval.scorer import AdapterScorer

PROMPTS = [[{"role": "user", "content": "What is " + "very " * k + f"much {k} plus {k}?"}] for k in (5, 0, 9, 2, 7)]
TARGETS = ["A short answer.", "Another, longer answer with more tokens."]


def test_generation_in_sorted_chunks_returns_each_prompts_own_answer_in_input_order(tiny_model_dir, tiny_adapters):
    s = AdapterScorer(str(tiny_model_dir), str(tiny_adapters["broken"]), threads=1)
    one_by_one = [s.generate([p], 6, "adapter")[0] for p in PROMPTS]
    assert s.generate(PROMPTS, 6, "adapter", chunk=2) == one_by_one  # 3 chunks of <= 2, sorted by length
    assert s.generate(PROMPTS, 6, "adapter") == one_by_one           # one call
    assert len(set(one_by_one)) > 1  # the prompts really get different answers: an order mix-up would show


def test_merged_adapter_scores_like_the_separate_lora_layers_and_has_no_base(tiny_model_dir, tmp_path):
    from tests.eval.conftest import make_tiny_adapter

    adapter = make_tiny_adapter(tiny_model_dir, tmp_path / "qv", 0.5, targets=("q_proj", "v_proj"))
    s = AdapterScorer(str(tiny_model_dir), str(adapter), threads=1)
    before = s.sequence_nll(PROMPTS[:2], TARGETS, "adapter")
    base = s.sequence_nll(PROMPTS[:2], TARGETS, "base")
    answers = s.generate(PROMPTS, 6, "adapter")
    assert s.merge()
    after = s.sequence_nll(PROMPTS[:2], TARGETS, "adapter")
    assert [n for _, n in after] == [n for _, n in before]
    assert all(abs(a - b) < 1e-4 * abs(b) for (a, _), (b, _) in zip(after, before))
    assert any(abs(a - b) > 1e-2 for (a, _), (b, _) in zip(after, base))  # the adapter is not the base
    assert s.generate(PROMPTS, 6, "adapter") == answers
    with pytest.raises(RuntimeError, match="merged"):
        s.sequence_nll(PROMPTS[:1], TARGETS[:1], "base")


def test_a_lora_on_a_tied_lm_head_is_not_merged(tiny_model_dir, tiny_adapters):
    s = AdapterScorer(str(tiny_model_dir), str(tiny_adapters["broken"]), threads=1)  # LoRA on lm_head too
    if not s.model.get_input_embeddings().weight.data_ptr() == s.model.get_output_embeddings().base_layer.weight.data_ptr():
        pytest.skip("the tiny model does not tie its embeddings")
    before = s.sequence_nll(PROMPTS[:2], TARGETS, "adapter")
    assert not s.merge()
    assert s.sequence_nll(PROMPTS[:2], TARGETS, "adapter") == before
    s.sequence_nll(PROMPTS[:1], TARGETS[:1], "base")  # still available


def test_sequence_nll_equals_the_full_logits_computation(tiny_model_dir, tiny_adapters):
    """Logits are computed only from the first target position on: the same NLL as log-softmax over all positions."""
    import torch

    s = AdapterScorer(str(tiny_model_dir), str(tiny_adapters["broken"]), threads=1)
    got = s.sequence_nll(PROMPTS[:3], TARGETS + ["x"], "adapter")
    for m, t, (nll, n) in zip(PROMPTS[:3], TARGETS + ["x"], got):
        p, y = s.prompt_ids(m), s.target_ids(t)
        with torch.no_grad():
            logp = torch.log_softmax(s.model(input_ids=torch.tensor([p + y])).logits[0, :-1].float(), dim=-1)
        ref = -sum(float(logp[len(p) - 1 + j, tok]) for j, tok in enumerate(y))
        assert n == len(y) and abs(nll - ref) < 1e-3


def test_merged_with_a_kept_base_scores_both_variants_like_the_peft_model(tiny_model_dir, tmp_path):
    from tests.eval.conftest import make_tiny_adapter

    adapter = make_tiny_adapter(tiny_model_dir, tmp_path / "qv", 0.5, targets=("q_proj", "v_proj"))
    s = AdapterScorer(str(tiny_model_dir), str(adapter), threads=1)
    before = {v: (s.sequence_nll(PROMPTS[:2], TARGETS, v), s.generate(PROMPTS, 6, v)) for v in ("adapter", "base")}
    assert s.merge(keep_base=True) and s.base_model is not None
    for v, (nll, answers) in before.items():
        got = s.sequence_nll(PROMPTS[:2], TARGETS, v)
        assert all(abs(a - b) < 1e-4 * abs(b) for (a, _), (b, _) in zip(got, nll)), v
        assert s.generate(PROMPTS, 6, v) == answers, v
    assert before["adapter"][0] != before["base"][0]


def test_grouped_query_sdpa_gives_transformers_sdpa_logits_on_a_left_padded_batch(tiny_model_dir, tiny_adapters):
    """The scorer's attention (query heads stacked per KV head, no repeat_kv copy) is used, and a padded batch's logits
    at every real position and its greedy answers equal transformers' own ``sdpa`` (GQA 4/2 heads)."""
    import torch

    from app.eval.scorer import GROUPED_SDPA

    s = AdapterScorer(str(tiny_model_dir), str(tiny_adapters["broken"]), threads=1)
    assert s.model.config._attn_implementation == GROUPED_SDPA
    cfg = s.model.config
    assert cfg.num_attention_heads > cfg.num_key_value_heads  # grouped: the path under test really runs
    ids = [s.prompt_ids(p) for p in PROMPTS]
    width, pad = max(map(len, ids)), s.tok.pad_token_id
    batch = torch.tensor([[pad] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    assert mask.min() == 0  # left padding: the mask path is taken
    answers = s.generate(PROMPTS, 8, "adapter")
    with torch.no_grad():
        grouped = s.model(input_ids=batch, attention_mask=mask).logits
        s.model.set_attn_implementation("sdpa")
        stock = s.model(input_ids=batch, attention_mask=mask).logits
    real = mask.bool()
    assert torch.allclose(grouped[real], stock[real], atol=1e-5, rtol=0)
    assert s.generate(PROMPTS, 8, "adapter") == answers
