"""Pairwise judges with position swapping: every (prompt, adapter answer, base answer) is judged as (a, b) and (b, a).

A judge implements ``first_preferred(prompts, firsts, seconds) -> list[bool]`` (True: the first-shown answer is
better). ``JudgeWorker`` runs one as a Ray Data callable class; ``app.core.gates.position_swap_stats`` turns the two
orders into win rate and position consistency.

- ``CausalLMJudge``: a chat model (by default the base model, or any local/served-equivalent checkpoint) is shown
  both answers as [A] and [B] and we compare the next-token logits of "A" and "B" (MT-Bench-style pairwise prompt).
- ``RewardModelJudge``: a reward model folder (app.models.reward_head, e.g. trained on HH-RLHF) scores each answer;
  the first is preferred when its reward is at least the second's. Order-independent by construction, ties aside,
  so its position consistency is measured, not assumed (a tie counts for the first-shown answer in both orders).
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np
import torch

JUDGE_TEMPLATE = (
    "You are comparing two answers to the same question.\n\n[Question]\n{question}\n\n[Answer A]\n{a}\n\n"
    "[Answer B]\n{b}\n\nWhich answer is more correct and helpful? Reply with the single letter A or B."
)


class Judge(Protocol):
    def first_preferred(self, prompts: Sequence[str], firsts: Sequence[str], seconds: Sequence[str]) -> list[bool]: ...


class CausalLMJudge:
    """Ask a chat LM 'A or B' and compare the two letters' next-token logits."""

    def __init__(self, model_dir: str, threads: int | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.letter_a = self.tok.encode("A", add_special_tokens=False)[0]
        self.letter_b = self.tok.encode("B", add_special_tokens=False)[0]

    @torch.no_grad()
    def first_preferred(self, prompts, firsts, seconds) -> list[bool]:
        texts = [self.tok.apply_chat_template(
            [{"role": "user", "content": JUDGE_TEMPLATE.format(question=q, a=a, b=b)}],
            add_generation_prompt=True, tokenize=False) for q, a, b in zip(prompts, firsts, seconds)]
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        logits = self.model(**enc).logits[:, -1]  # [B, V]: left padding puts every last prompt token at -1
        return (logits[:, self.letter_a] >= logits[:, self.letter_b]).tolist()


class RewardModelJudge:
    """Score each (question, answer) with a reward model folder (app.models.reward_head: LoRA or full, with lineage)."""

    def __init__(self, model_dir: str, threads: int | None = None):
        from app.models.reward_head import load_reward_model

        if threads:
            torch.set_num_threads(threads)
        self.rm = load_reward_model(model_dir)

    def score(self, prompts: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        tok = self.rm.tokenizer
        texts = [tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                         tokenize=False) for q, a in zip(prompts, answers)]
        return self.rm.score_texts(texts)

    def first_preferred(self, prompts, firsts, seconds) -> list[bool]:
        return (self.score(prompts, firsts) >= self.score(prompts, seconds)).tolist()


def build_judge(kind: str, model_dir: str, threads: int | None = None) -> Judge:
    if kind == "causal_lm":
        return CausalLMJudge(model_dir, threads)
    if kind == "reward_model":
        return RewardModelJudge(model_dir, threads)
    raise ValueError(f"unknown judge kind {kind!r}")


class JudgeWorker:
    """Ray Data callable class: rows (id, question, adapter_answer, base_answer) -> adapter_first, base_first.

    ``adapter_first``: the judge preferred the first-shown answer when shown (adapter, base);
    ``base_first``: same, shown (base, adapter).
    """

    def __init__(self, factory: Callable[[], Judge]):
        self.judge = factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        q = [str(x) for x in batch["question"]]
        a = [str(x) for x in batch["adapter_answer"]]
        b = [str(x) for x in batch["base_answer"]]
        return {"id": list(batch["id"]), "adapter_first": self.judge.first_preferred(q, a, b),
                "base_first": self.judge.first_preferred(q, b, a)}
