"""PPO's inputs refused before any actor starts: a reward model of another base, a folder with no score head, no
reward source, an SFT adapter of another base (no Ray: these must fail in the driver process, in one line)."""

from __future__ import annotations

import json
import shutil

import pytest

from app.config.errors import ConfigError
from app.config.loader import validate_config
from app.config.ppo import PPOConfig
from app.ppo.preflight import check_inputs


def cfg_with(**sections) -> PPOConfig:
    return validate_config({"model": {"source": "tiny:llama"}, **sections}, PPOConfig)


def edit_lineage(folder, **changes):
    path = folder / "rayalign_lineage.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_reward_model_and_sft_adapter_pass_and_name_their_parents(tiny_reward_model, tiny_sft_adapter, tiny_model_dir):
    from app.models.loader import resolve_model

    cfg = cfg_with(reward={"kind": "sum", "model_path": str(tiny_reward_model)}, init={"adapter": str(tiny_sft_adapter)})
    parents = check_inputs(cfg, resolve_model("tiny:llama").base_sha)
    assert parents["reward_model"]["dataset_id"] == "preference-tinyrm"
    assert parents["init_adapter"]["dataset_id"] == "sft-tinysft"


def test_reward_model_of_another_base_is_refused(tiny_reward_model, tmp_path, tiny_model_dir):
    rm = shutil.copytree(tiny_reward_model, tmp_path / "rm")
    edit_lineage(rm, base_sha="ab" * 32, base_model_source="bundled:smollm2-135m-instruct")
    from app.models.loader import resolve_model

    with pytest.raises(ConfigError, match=r"^reward.model_path .*base SHA abababababab .*policy's base \(tiny:llama\)") as e:
        check_inputs(cfg_with(reward={"kind": "model", "model_path": str(rm)}), resolve_model("tiny:llama").base_sha)
    assert "\n" not in str(e.value)


def test_folder_without_score_head_is_refused(tiny_sft_adapter, tmp_path):
    with pytest.raises(ConfigError, match=r"reward.model_path .*not a reward model \(lineage method is 'lora'"):
        check_inputs(cfg_with(reward={"kind": "model", "model_path": str(tiny_sft_adapter)}), "x")
    fake = shutil.copytree(tiny_sft_adapter, tmp_path / "fake-rm")
    edit_lineage(fake, method="reward")  # mislabelled: says reward, but the weights are a plain causal-LM adapter
    with pytest.raises(ConfigError, match=r"not a reward model \(its weights have no 'score' head\)"):
        check_inputs(cfg_with(reward={"kind": "model", "model_path": str(fake)}), "x")


def test_no_reward_source_names_the_key():
    with pytest.raises(ConfigError, match=r"reward.model_path is not set: PPO has no reward source"):
        cfg_with(reward={"kind": "model"})


def test_sft_adapter_of_another_base_is_refused(tiny_sft_adapter, tmp_path):
    other = shutil.copytree(tiny_sft_adapter, tmp_path / "sft")
    edit_lineage(other, base_sha="cd" * 32)
    with pytest.raises(ConfigError, match=r"^init.adapter .*base SHA cdcdcdcdcdcd, but the policy's base"):
        check_inputs(cfg_with(init={"adapter": str(other)}), "ef" * 32)
    with pytest.raises(ConfigError, match=r"init.adapter .*no adapter_config.json"):
        check_inputs(cfg_with(init={"adapter": str(tmp_path)}), "ef" * 32)
