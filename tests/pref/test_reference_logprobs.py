"""Precomputed reference log-probs (Ray Data map_batches stage) equal live ones; packed scoring equals padded."""

from __future__ import annotations

import pytest
import torch

from app.config.common import ModelSpec
from app.core.logprobs import concat_for_packed_forward, packed_sequence_logprobs, sequence_logprobs


def test_packed_logprobs_equal_padded_full_logits(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    gen = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 400, (n,), generator=gen).tolist() for n in (9, 4, 13)]
    labels = [[-100] * 3 + s[3:] for s in seqs]
    with torch.no_grad():
        packed = packed_sequence_logprobs(model, concat_for_packed_forward(seqs, labels))
        live = torch.cat([sequence_logprobs(model(input_ids=torch.tensor([s])).logits, torch.tensor([y])) for s, y in zip(seqs, labels)])
    torch.testing.assert_close(packed, live, atol=1e-5, rtol=0)


@pytest.mark.ray
def test_precomputed_reference_logprobs_equal_live(ray_local, tiny_preference_artifact, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from app.data.artifact import load_artifact
    from app.data.reference_logprobs import MANIFEST_KEY, has_reference_logprobs, precompute_reference_logprobs, reference_identity

    spec = ModelSpec(source=str(tiny_model_dir))
    # num_cpus = every CPU of the 2-CPU test cluster (what configs/dpo/smollm2_hh_lora.yaml asks for): the scoring
    # actor must still leave room for the pipeline's read/write tasks, or this call never returns
    entry = precompute_reference_logprobs(tiny_preference_artifact, spec, batch_size=5, num_cpus=2)
    artifact = load_artifact(tiny_preference_artifact)
    assert artifact.manifest[MANIFEST_KEY]["base_sha"] == entry["base_sha"]
    assert has_reference_logprobs(artifact.path, reference_identity(spec, None))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for split, n in artifact.splits.items():
        table = artifact.read_table(split)
        assert table.num_rows == n  # nothing lost, nothing duplicated
        rows = table.to_pylist()
        with torch.no_grad():  # live: one unpadded full-logits forward per sequence, the textbook way
            for row in rows:
                for side in ("chosen", "rejected"):
                    logits = model(input_ids=torch.tensor([row[f"{side}_input_ids"]])).logits
                    live = sequence_logprobs(logits, torch.tensor([row[f"{side}_labels"]])).item()
                    assert abs(row[f"ref_{side}_logp"] - live) <= 1e-5, (split, side, row[f"ref_{side}_logp"], live)
    # same reference again: a no-op that keeps the columns
    again = precompute_reference_logprobs(tiny_preference_artifact, spec, batch_size=5, num_cpus=0.5)
    assert again["created_at"] == entry["created_at"]
