"""PPO pieces without Ray: batch layout, prompt loading/cursor, placement planning, config rules."""

import pytest
import torch

from app.config.errors import ConfigError
from app.config.loader import validate_config
from app.config.ppo import PPOConfig
from app.ppo.batch import build_batch, trim_response
from app.ppo.group import RoleResources, plan_bundles, split_evenly
from app.ppo.prompts import PromptCursor, load_prompts, prompt_dataset_id


def test_build_batch_layout_and_select():
    b = build_batch([[5, 6], [7]], [[1, 2, 3], [4]], pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 1, 2, 3], [0, 7, 4, 0, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 0, 0]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 0, 1, 1, 1]]
    assert b.response_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    sub = b.select(torch.tensor([1]))  # trims shared padding on both sides
    assert sub.input_ids.tolist() == [[7, 4]] and sub.prompt_len == 1 and sub.response_ids.tolist() == [[4]]


def test_trim_response_keeps_first_eos():
    assert trim_response([3, 4, 9, 5, 9], {9}, pad_id=0) == [3, 4, 9]
    assert trim_response([3, 4, 0, 0], {9}, pad_id=0) == [3, 4]


def test_prompt_cursor_is_a_resumable_fixed_order():
    a = PromptCursor(5, seed=1)
    first = a.take(7)
    assert sorted(first[:5]) == list(range(5))  # one epoch covers every prompt once
    b = PromptCursor(**a.state_dict())
    assert b.take(4) == PromptCursor(5, seed=1).take(11)[7:]


def test_load_prompts_renders_chat_and_names_bad_rows(prompt_file, tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = load_prompts(str(prompt_file), tok, system_prompt="Be brief.", max_prompts=3)
    assert len(prompts) == 3 and prompts[0].text.startswith("<|im_start|>system\nBe brief.")
    assert prompts[0].text.endswith("<|im_start|>assistant\n") and prompts[0].reference.endswith("#### 3")
    hard = tmp_path / "steps.jsonl"
    hard.write_text('{"question": "a", "answer": "<<1+1=2>>2<<2*3=6>>6 #### 6"}\n{"question": "b", "answer": "<<1+2=3>>3 #### 3"}\n')
    assert [q.reference[-1] for q in load_prompts(str(hard), tok, max_solution_steps=1)] == ["3"]
    filled = load_prompts(str(prompt_file), tok, max_prompts=1, response_prefix="The answer is")[0]
    assert filled.text.endswith("<|im_start|>assistant\nThe answer is")  # generation continues the pre-filled turn
    assert filled.ids[-len(tok("The answer is", add_special_tokens=False)["input_ids"]):] == \
        tok("The answer is", add_special_tokens=False)["input_ids"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok", "answer": "1"}\n{"answer": "2"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl row 2: field 'question'"):
        load_prompts(str(bad), tok)


def test_artifact_prompts_keep_earlier_assistant_turns(tmp_path, tiny_model_dir):
    """A multi-turn prompt (HH-RLHF) keeps its earlier assistant turns; only a trailing answer is dropped."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "joke?"}]
    (tmp_path / "train").mkdir()
    (tmp_path / "manifest.json").write_text(json.dumps({"record_type": "prompt"}))
    pq.write_table(pa.table({"messages": [json.dumps(turns), json.dumps(turns + [{"role": "assistant", "content": "no"}])],
                             "reference": ["", ""]}), tmp_path / "train" / "part-0.parquet")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    first, second = load_prompts(str(tmp_path), tok)
    assert first.text == second.text == tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    assert "hello" in first.text and "no<" not in first.text


def test_prompt_dataset_id_is_the_artifact_id_or_the_file_hash_never_the_path(tmp_path, prompt_file):
    import hashlib
    import json

    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "manifest.json").write_text(json.dumps({"record_type": "prompt", "id": "prompt-0123456789abcdef"}))
    assert prompt_dataset_id(str(tmp_path / "art")) == "prompt-0123456789abcdef"
    expected = "jsonl-" + hashlib.sha256(prompt_file.read_bytes()).hexdigest()[:16]  # independent: whole-file hash
    assert prompt_dataset_id(str(prompt_file)) == expected
    (tmp_path / "bare").mkdir()
    with pytest.raises(ConfigError, match="manifest.json with an 'id'"):
        prompt_dataset_id(str(tmp_path / "bare"))


def test_plan_bundles_colocated_vs_disaggregated():
    roles = {"policy": RoleResources(1.0, 0.5), "value": RoleResources(0.5, 0.5), "reward": RoleResources(0.25, 0, 2)}
    bundles, where = plan_bundles(roles, colocate=True)
    assert bundles == [{"CPU": 2.0, "GPU": 1.0}] and where["reward"] == [0, 0]
    bundles, where = plan_bundles(roles, colocate=False)
    assert len(bundles) == 4 and where == {"policy": [0], "value": [1], "reward": [2, 3]}
    assert bundles[2] == {"CPU": 0.25}
    assert split_evenly(list(range(5)), 2) == [[0, 1, 2], [3, 4]]


def test_config_rules():
    with pytest.raises(ConfigError, match="samples_per_prompt >= 2"):
        validate_config({"algo": {"estimator": "grpo"}}, PPOConfig)
    with pytest.raises(ConfigError, match="full fine-tuning"):
        validate_config({"lora": {"enabled": False}}, PPOConfig)
    with pytest.raises(ConfigError, match="unknown key 'algo.gama'"):
        validate_config({"algo": {"gama": 0.9}}, PPOConfig)


def test_run_checkpoints_are_atomic_pruned_and_skip_corrupt(tmp_path):
    from app.train.checkpoint import (
        TrainState, commit_run_checkpoint, latest_run_checkpoint, read_manifest, stage_run_checkpoint,
    )

    for step in (1, 2, 3):
        (stage_run_checkpoint(tmp_path, step) / "policy.pt").write_bytes(bytes([step]) * 64)
        commit_run_checkpoint(tmp_path, TrainState(step=step), {"cursor": {"position": 4 * step}}, keep=2)
    stage_run_checkpoint(tmp_path, 4)  # a crash mid-save leaves only a .tmp folder behind
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_000002", "iter_000003", "iter_000004.tmp"]
    assert latest_run_checkpoint(tmp_path).name == "iter_000003"
    (tmp_path / "checkpoints" / "iter_000003" / "policy.pt").write_bytes(b"x" * 64)  # same size, corrupt bytes
    latest = latest_run_checkpoint(tmp_path)
    assert latest.name == "iter_000002" and read_manifest(latest)["extra"]["cursor"]["position"] == 8


def test_actor_lora_honours_layers_and_all_linear(tiny_model_dir):
    """The PPO actors build LoRA through app.models.lora: layers_to_transform and 'all-linear' reach peft (the old
    hand-built LoraConfig dropped the first and split the second into characters); peft refuses the two together,
    so the schema does, naming the key."""
    import pytest
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from app.config.ppo import PolicyLoraSpec
    from app.ppo.actors import _lora_config

    with pytest.raises(ValueError, match="layers_to_transform"):
        PolicyLoraSpec(target_modules="all-linear", layers_to_transform=[0])
    adapted_by = {}
    for name, spec in {"layers": dict(target_modules=["q_proj", "down_proj"], layers_to_transform=[0]),
                       "all": dict(target_modules="all-linear")}.items():
        lora = PolicyLoraSpec(r=4, alpha=8, dropout=0.0, **spec).model_dump()
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), _lora_config(lora, causal_lm=True))
        adapted_by[name] = {n.split(".lora_A")[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert adapted_by["layers"] and all(".layers.0." in n for n in adapted_by["layers"]), adapted_by["layers"]
    assert {n.rsplit(".", 1)[-1] for n in adapted_by["all"]} >= {"q_proj", "o_proj", "gate_proj", "down_proj"}
