"""lora.layers_to_transform: adapters only in the named decoder layers, for the causal LM (SFT/DPO) and the
reward classifier alike; layers below get no adapter and no gradient."""

import pytest
import torch

from app.config.common import LoraSpec


def test_layers_to_transform_is_validated():
    with pytest.raises(ValueError, match="distinct layer indices"):
        LoraSpec(layers_to_transform=[1, 1])
    with pytest.raises(ValueError, match="distinct layer indices"):
        LoraSpec(layers_to_transform=[])
    assert LoraSpec().layers_to_transform is None


@pytest.mark.parametrize("kind", ["causal", "reward"])
def test_adapters_only_in_the_named_layers(tiny_model_dir, kind):
    from app.models.lora import lora_config
    from app.models.reward_head import build_reward_model

    spec = LoraSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"], layers_to_transform=[1])
    if kind == "causal":
        from peft import get_peft_model
        from transformers import AutoModelForCausalLM

        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora_config(spec))
    else:
        model = build_reward_model(tiny_model_dir, spec, pad_token_id=0)
    lora_names = [n for n, _ in model.named_parameters() if "lora_A" in n]
    assert lora_names and all(".layers.1." in n for n in lora_names)
    # make the adapter non-zero so layer 1's output depends on it, then check gradients stop at layer 1
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    ids = torch.randint(0, 100, (1, 12))
    out = model(input_ids=ids)
    (out.logits.float().sum()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for n, g in grads.items() if "lora_" in n)
    if kind == "reward":  # the SEQ_CLS head is trained and saved in full
        assert any("score" in n for n in grads)
    frozen_low = [p for n, p in model.named_parameters() if ".layers.0." in n]
    assert frozen_low and all(not p.requires_grad and p.grad is None for p in frozen_low)
