"""Fixtures for preference tests: a small learnable preference artifact tokenized for the tiny model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

GOOD = "thank you here to help step by step".split()
BAD = "sorry i cannot no".split()
TOPICS = "apples water people words time day week dollars number question".split()


def tokenize_pair(tok, prompt: str, chosen: str, rejected: str) -> dict:
    """One 'preference' record: ChatML prompt (labels -100) + response + end-of-turn (labels = ids)."""
    prompt_text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    for side, text in (("chosen", chosen), ("rejected", rejected)):
        resp = tok(text + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        row[f"{side}_input_ids"] = prompt_ids + resp
        row[f"{side}_labels"] = [-100] * len(prompt_ids) + resp
    return row


def synthetic_pairs(tok, n: int, seed: int) -> list[dict]:
    """Pairs where the chosen answer is helpful-sounding and the rejected one a refusal: easy to learn, varied lengths."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = " ".join(rng.choices(TOPICS, k=rng.randint(2, 6)))
        chosen = " ".join(rng.choices(GOOD, k=rng.randint(3, 8)) + rng.choices(TOPICS, k=2))
        rejected = " ".join(rng.choices(BAD, k=rng.randint(3, 8)) + rng.choices(TOPICS, k=2))
        rows.append(tokenize_pair(tok, f"how many {topic}?", chosen, rejected))
    return rows


def write_preference_artifact(out: Path, tok, n_train: int, n_val: int, seed: int = 0) -> Path:
    from app.data.artifact import write_artifact

    splits = {"train": synthetic_pairs(tok, n_train, seed)}
    if n_val:
        splits["validation"] = synthetic_pairs(tok, n_val, seed + 1)
    write_artifact(out, "preference", splits, {"model_source": "tiny:llama", "max_length": 128})
    return out


@pytest.fixture()
def tiny_preference_artifact(tmp_path, tiny_model_dir) -> Path:
    """A fresh (per test: precompute mutates it) 48/16-pair preference artifact for the tiny model."""
    from app.models.loader import load_tokenizer

    return write_preference_artifact(tmp_path / "pref-artifact", load_tokenizer(str(tiny_model_dir)), 48, 16)
