"""`rayalign export --merge`: the merged full model answers exactly like base + adapter (and unlike the base)."""

from __future__ import annotations

import torch

from app.cli import main
from app.models.adapter import read_lineage, write_lineage


def test_export_merge_equals_unmerged(tiny_model_dir, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    write_lineage(adapter, base_model_source="tiny:llama", base_sha="x" * 64, dataset_id="d", config_hash="c",
                  method="lora", lora={"r": 4, "alpha": 8, "target_modules": "all-linear"}, metrics={})
    assert main(["export", str(adapter), "--merge", "--out", str(tmp_path / "merged")]) == 0
    assert "max |merged - unmerged|" in capsys.readouterr().out

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    fresh_base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([[1, 5, 9, 30, 2]])
    with torch.no_grad():
        assert not torch.allclose(merged(ids).logits, fresh_base(ids).logits, atol=1e-3)  # the adapter did something
    assert read_lineage(tmp_path / "merged")["merged_from_adapter"] == str(adapter)


def test_export_refuses_a_non_adapter_folder(tmp_path):
    import pytest

    from app.models.export import merge_adapter

    with pytest.raises(FileNotFoundError, match="not a peft adapter folder"):
        merge_adapter(tmp_path, tmp_path / "o")
