"""One loaded base model + adapter that scores and generates as either variant ("adapter" or "base").

The base variant is the same weights with the LoRA layers switched off (peft ``disable_adapter``), so base and
adapter are compared on identical tokens with one model in memory.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch

VARIANTS = ("adapter", "base")


class AdapterScorer:
    """Token log-likelihoods and greedy generations for chat prompts, with or without the adapter."""

    def __init__(self, model_dir: str, adapter_dir: str | None, max_length: int = 384, threads: int | None = None):
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        self.model = PeftModel.from_pretrained(model, adapter_dir) if adapter_dir else model
        self.model.eval()
        self.has_adapter = adapter_dir is not None
        self.max_length = max_length

    def variant(self, name: str):
        if name == "adapter":
            return nullcontext()
        if name == "base":
            return self.model.disable_adapter() if self.has_adapter else nullcontext()
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
        seqs, labels = [], []
        for p, t in pairs:
            t = t[: self.max_length - 1]
            p = p[-(self.max_length - len(t)):]
            seqs.append(p + t)
            labels.append([-100] * len(p) + t)
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        lab = torch.tensor([l + [-100] * (width - len(l)) for l in labels])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        with self.variant(variant):
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # [B, T-1, V]
        target = lab[:, 1:]
        logp = torch.log_softmax(logits, dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        valid = target != -100
        nll = -(logp * valid).sum(dim=1)
        return [(float(n), int(c)) for n, c in zip(nll, valid.sum(dim=1))]

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[dict]], max_new_tokens: int, variant: str) -> list[str]:
        """Greedy replies for a batch of chat prompts (left-padded)."""
        self.tok.padding_side = "left"
        texts = [self.tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with self.variant(variant):
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=self.tok.pad_token_id)
        return [self.tok.decode(row[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() for row in out]
