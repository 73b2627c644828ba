"""One loaded base model + adapter that scores and generates as either variant ("adapter" or "base").

The base variant is the same weights with the LoRA layers switched off (peft ``disable_adapter``), so base and
adapter are compared on identical tokens with one model in memory.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch

VARIANTS = ("adapter", "base")
GROUPED_SDPA = "sdpa_grouped"


def grouped_query_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' ``sdpa`` attention for grouped-query models without copying K/V to every query head.

    Shapes: query [B, Hq, q, D], key/value [B, Hk, T, D], Hq = g * Hk; mask [B|1, 1, q, T] (bool, True = attend).
    With a padding mask, transformers' ``sdpa`` repeats K and V to Hq heads (``repeat_kv``) on CPU and CUDA: at each
    decode step a copy of g x the whole KV cache per layer, which dominated SmolLM2's (9 query / 3 KV heads) batched
    greedy decoding on 2 cores. Here the g query heads that share a KV head are stacked along the query axis instead
    ([B, Hk, g*q, D], the mask repeated g times along q): every query row meets the same keys, values and mask as
    with ``repeat_kv``, so each row's softmax(q K^T * scale + mask) V is the same computation (Ainslie et al. 2023,
    GQA). Without a mask (no padding), with dropout or another mask layout: transformers' ``sdpa`` unchanged.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    b, hq, q, d = query.shape
    hk = key.shape[1]
    if hq == hk or attention_mask is None or attention_mask.dim() != 4 or attention_mask.shape[1] != 1 or dropout \
            or kwargs.get("position_bias") is not None or attention_mask.dtype != torch.bool:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    g = hq // hk
    out = torch.nn.functional.scaled_dot_product_attention(
        query.reshape(b, hk, g * q, d), key, value, attn_mask=attention_mask.repeat(1, 1, g, 1), scale=scaling)
    return out.view(b, hk, g, q, d).reshape(b, hq, q, d).transpose(1, 2).contiguous(), None


def use_grouped_sdpa(model) -> None:
    """Switch ``model`` (a transformers model with ``sdpa`` attention) to :func:`grouped_query_sdpa`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GROUPED_SDPA, grouped_query_sdpa)
    AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)
    model.set_attn_implementation(GROUPED_SDPA)


class AdapterScorer:
    """Token log-likelihoods and greedy generations for chat prompts, with or without the adapter."""

    def __init__(self, model_dir: str, adapter_dir: str | None, max_length: int = 384, threads: int | None = None):
        from peft import PeftModel
        from transformers import AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        model = self._load_base(model_dir)
        self.model = PeftModel.from_pretrained(model, adapter_dir) if adapter_dir else model
        self.model.eval()
        self.model_dir = model_dir
        self.has_adapter = adapter_dir is not None
        self.merged = False
        self.base_model = None  # a separate plain copy of the base, after merge(keep_base=True)
        self.max_length = max_length

    @staticmethod
    def _load_base(model_dir: str):
        """The base model in float32, with :func:`grouped_query_sdpa` when transformers picked ``sdpa``."""
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        if model.config._attn_implementation == "sdpa":
            use_grouped_sdpa(model)
        return model.eval()

    def merge(self, keep_base: bool = False) -> bool:
        """Fold the LoRA update into the weights (peft ``merge_and_unload``: W + s*B@A). The same function with fewer
        small ops per layer and decode step (the LoRA A/B matmuls, dropout, scaling; 1.7x faster greedy decoding
        of SmolLM2 + a rank-16 all-linear LoRA on 2 cores); fp32 rounding differs at ~1e-7 relative.
        ``keep_base``: load a plain copy of the base for the base variant (one more model in memory); else the
        base variant is gone afterwards.

        Not merged (returns False) when a LoRA sits on a weight tied to the input embeddings (lm_head of a model
        with tie_word_embeddings): merging would change the embeddings too, i.e. another function."""
        if not self.has_adapter or self.merged:
            return self.merged
        emb = self.model.get_input_embeddings().weight.data_ptr()
        for module in self.model.modules():
            base = getattr(module, "base_layer", None)
            if getattr(base, "weight", None) is not None and base.weight.data_ptr() == emb:
                return False
        if keep_base:
            self.base_model = self._load_base(self.model_dir)
        self.model = self.model.merge_and_unload()
        self.merged = True
        return True

    @contextmanager
    def variant(self, name: str):
        """The model that scores ``name`` ("adapter" or "base"): ``with scorer.variant(v) as model: ...``."""
        if name == "adapter":
            yield self.model
        elif name == "base" and self.base_model is not None:
            yield self.base_model
        elif name == "base" and self.merged:
            raise RuntimeError("the adapter is merged into the weights: the base variant is no longer available")
        elif name == "base" and self.has_adapter:
            with self.model.disable_adapter():
                yield self.model
        elif name == "base":
            yield self.model
        else:
            raise ValueError(f"unknown variant {name!r}")

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def target_ids(self, text: str) -> list[int]:
        end = self.tok.eos_token or ""
        return self.tok(text + end, add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def sequence_nll(self, prompts: Sequence[list[dict]], targets: Sequence[str], variant: str) -> list[tuple[float, int]]:
        """Per example: (sum of -log p(target token | prefix), number of target tokens).

        Sequences are prompt + target truncated to ``max_length`` from the left of the prompt; right-padded batch
        of shape [B, T]; loss only on target positions (labels -100 elsewhere).
        """
        pairs = [(self.prompt_ids(m), self.target_ids(t)) for m, t in zip(prompts, targets)]
        return self._nll(pairs, variant)

    @torch.no_grad()
    def text_nll(self, texts: Sequence[str], variant: str) -> list[tuple[float, int]]:
        """Plain-text log-likelihood (no chat template): every token after a document-start token is scored."""
        start = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id
        pairs = [([start], self.tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        return self._nll(pairs, variant)

    def _nll(self, pairs: Sequence[tuple[list[int], list[int]]], variant: str,
             chunk: int = 8) -> list[tuple[float, int]]:
        """Scored in chunks of ``chunk`` sequences of similar length (sorted: little padding, and the [B, T, vocab]
        logits stay ~0.4 GB however large the Ray Data batch); results in the input order."""
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
        for start in range(0, len(order), chunk):
            part = order[start:start + chunk]
            for i, res in zip(part, self._nll_batch([pairs[i] for i in part], variant)):
                out[i] = res
        return out

    def _nll_batch(self, pairs: Sequence[tuple[list[int], list[int]]], variant: str) -> list[tuple[float, int]]:
        seqs, labels, prompt_lens = [], [], []
        for p, t in pairs:
            t = t[: self.max_length - 1]
            p = p[-(self.max_length - len(t)):]
            seqs.append(p + t)
            labels.append([-100] * len(p) + t)
            prompt_lens.append(len(p))
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        lab = torch.tensor([l + [-100] * (width - len(l)) for l in labels])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        # logits only where some row has a target: positions first .. T-2 predict tokens first+1 .. T-1 (every row's
        # prompt is >= first + 1 tokens, so nothing scored is dropped; the prompt positions' lm_head is skipped)
        first = min(prompt_lens) - 1
        keep = torch.arange(first, width - 1)
        with self.variant(variant) as model:
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits.float()  # [B, K, V]
        target = lab[:, first + 1:]
        logp = torch.log_softmax(logits, dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        valid = target != -100
        nll = -(logp * valid).sum(dim=1)
        return [(float(n), int(c)) for n, c in zip(nll, valid.sum(dim=1))]

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[dict]], max_new_tokens: int, variant: str,
                 chunk: int | None = None) -> list[str]:
        """Greedy replies for chat prompts, in the input order.

        Generated in ``ceil(len / chunk)`` near-equal chunks of prompts of similar token length (sorted), each one
        left-padded ``generate`` call of shape [b, longest prompt + max_new_tokens]: a large chunk amortises the
        per-step cost of a decode step over more rows, sorting keeps the padding (prefill and attention over pad
        positions) small. A row stops at the end-of-turn token; a chunk ends when all its rows have stopped or
        ``max_new_tokens`` is reached.
        """
        texts = [self.tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
        ids = [self.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        parts = max(1, -(-len(ids) // (chunk or max(len(ids), 1))))
        size = -(-len(ids) // parts)
        out = [""] * len(ids)
        pad = self.tok.pad_token_id
        for start in range(0, len(order), size):
            part = order[start:start + size]
            width = max(len(ids[i]) for i in part)
            batch = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in part])
            mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in part])
            with self.variant(variant) as model:
                gen = model.generate(input_ids=batch, attention_mask=mask, max_new_tokens=max_new_tokens,
                                          do_sample=False, pad_token_id=pad)
            for i, row in zip(part, gen):
                out[i] = self.tok.decode(row[width:], skip_special_tokens=True).strip()
        return out
