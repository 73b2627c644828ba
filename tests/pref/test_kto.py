"""KTO's data path: mismatched KL sequences and reference log-probs of an 'unpaired' artifact (Ray Data precompute)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.config.common import ModelSpec
from app.core.logprobs import sequence_logprobs
from app.data.reference_logprobs import mismatched_sequences
from tests.pref.conftest import synthetic_pairs


def unpaired_rows(tok, n_pairs: int, seed: int) -> list[dict]:
    """Each synthetic pair as two KTO rows: the helpful answer desirable, the refusal undesirable."""
    rows = []
    for pair in synthetic_pairs(tok, n_pairs, seed):
        for side, label in (("chosen", True), ("rejected", False)):
            rows.append({"prompt": pair["prompt"], "completion": pair[side], "label": label,
                         "input_ids": pair[f"{side}_input_ids"], "labels": pair[f"{side}_labels"]})
    return rows


def write_unpaired_artifact(out: Path, tok, n_train: int, n_val: int, seed: int = 0) -> Path:
    from app.data.artifact import write_artifact

    splits = {"train": unpaired_rows(tok, n_train, seed), "validation": unpaired_rows(tok, n_val, seed + 1)}
    write_artifact(out, "unpaired", splits, {"model_source": "tiny:llama", "max_length": 128})
    return out


@pytest.fixture()
def tiny_unpaired_artifact(tmp_path, tiny_model_dir) -> Path:
    from app.models.loader import load_tokenizer

    return write_unpaired_artifact(tmp_path / "kto-artifact", load_tokenizer(str(tiny_model_dir)), 24, 8)


def test_mismatched_sequences_pair_each_prompt_with_the_previous_completion():
    ids = [[1, 2, 10, 11], [3, 20], [4, 5, 6, 30, 31, 32]]
    labels = [[-100, -100, 10, 11], [-100, 20], [-100, -100, -100, 30, 31, 32]]
    kl_ids, kl_labels = mismatched_sequences(ids, labels)
    assert kl_ids == [[1, 2, 30, 31, 32], [3, 10, 11], [4, 5, 6, 20]]
    assert kl_labels == [[-100, -100, 30, 31, 32], [-100, 10, 11], [-100, -100, -100, 20]]


@pytest.mark.ray
def test_kto_reference_logprobs_cover_rows_and_their_kl_sequences(ray_local, tiny_unpaired_artifact, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from app.data.artifact import load_artifact
    from app.data.reference_logprobs import MANIFEST_KEY, precompute_reference_logprobs

    entry = precompute_reference_logprobs(tiny_unpaired_artifact, ModelSpec(source=str(tiny_model_dir)), batch_size=5, num_cpus=1)
    assert entry["columns"] == ["ref_logp", "ref_kl_logp"]
    artifact = load_artifact(tiny_unpaired_artifact)
    assert artifact.manifest[MANIFEST_KEY]["columns"] == entry["columns"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for split, n in artifact.splits.items():
        rows = artifact.read_table(split).to_pylist()
        assert len(rows) == n
        # each row carries its own prompt + another row's completion; together the KL completions are all completions
        starts = [next(k for k, y in enumerate(r["labels"]) if y != -100) for r in rows]
        assert all(r["kl_input_ids"][:k] == r["input_ids"][:k] and all(y == -100 for y in r["kl_labels"][:k]) for r, k in zip(rows, starts))
        completions = sorted(r["input_ids"][k:] for r, k in zip(rows, starts))
        assert sorted(r["kl_input_ids"][k:] for r, k in zip(rows, starts)) == completions
        assert sum(r["kl_input_ids"] == r["input_ids"] for r in rows) == 0
        with torch.no_grad():
            for row in rows[:3]:
                for ids, labels, col in ((row["input_ids"], row["labels"], "ref_logp"), (row["kl_input_ids"], row["kl_labels"], "ref_kl_logp")):
                    live = sequence_logprobs(model(input_ids=torch.tensor([ids])).logits, torch.tensor([labels])).item()
                    assert abs(row[col] - live) <= 1e-5, (split, col)
