"""Best-of-n / RLAIF stage on the tiny model: k samples per prompt scored by a reward model through Ray Data actors;
the preference artifact it writes trains DPO unchanged, the SFT artifact is a normal packed SFT artifact."""

from __future__ import annotations

import json

import pytest

from app.data.best_of_n import _messages, _prompt_field, pick_best_worst


def test_pick_best_worst_respects_the_minimum_gap():
    assert pick_best_worst([0.1, 0.9, -0.4, 0.3], min_gap=1.0) == (1, 2)
    assert pick_best_worst([0.1, 0.9, -0.4, 0.3], min_gap=1.31) is None  # 0.9 - (-0.4) = 1.3 < 1.31
    assert pick_best_worst([0.5], min_gap=0.0) is None and pick_best_worst([0.2, 0.2], min_gap=0.0) is None


def test_prompt_rows_may_be_multi_turn_conversations():
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "joke?"}]
    assert _messages({"messages": json.dumps(turns)}) == turns == _messages({"messages": turns})
    assert _prompt_field(turns) == turns  # pairs.jsonl keeps the conversation (TRL conversational prompt)
    assert _prompt_field(_messages({"prompt": "Is the sky blue?"})) == "Is the sky blue?"
    with pytest.raises(ValueError, match="ending with a user turn"):
        _messages({"messages": turns[:2]})


@pytest.mark.ray
@pytest.mark.e2e
def test_best_of_n_writes_sft_and_preference_artifacts_dpo_consumes(ray_local, tmp_path, tiny_model_dir):
    from app.config.dpo import DPOConfig
    from app.config.loader import load_config
    from app.config.paths import REPO_ROOT
    from app.data.artifact import load_artifact
    from app.data.best_of_n import run_best_of_n
    from app.launch.preference import fit_preference
    from tests.ppo.conftest import write_tiny_reward_model

    rm = write_tiny_reward_model(tmp_path / "rm", tiny_model_dir)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Name {i} things you can do with {w}."}) + "\n"
                               for i, w in enumerate(["water", "paper", "a rope", "sand", "a box", "glue"], 2)))
    res = run_best_of_n(prompts, tmp_path / "bon", "tiny:llama", str(rm), REPO_ROOT / "configs/tiny/ingest_preference.yaml",
                        k=4, max_new_tokens=8, min_gap=0.01, cpus_per_actor=0.5)
    assert res.prompts == 6 and 1 <= res.pairs <= 6 and res.mean_best_score > res.mean_worst_score
    pairs = [json.loads(line) for line in res.pairs_jsonl.read_text().splitlines()]
    assert all(p["score_chosen"] - p["score_rejected"] >= 0.01 for p in pairs)
    sft, pref = load_artifact(res.sft_artifact), load_artifact(res.preference_artifact)
    assert sft.record_type == "sft" and pref.record_type == "preference"
    cfg = load_config(REPO_ROOT / "configs/tiny/dpo_sigmoid.yaml", DPOConfig,
                      [f"data.artifact={pref.path}", "train.max_steps=1", "data.eval_fraction=0.0",
                       f"output.dir={tmp_path / 'dpo'}", f"ray.storage_path={tmp_path / 'runs'}"])
    summary = fit_preference("dpo", cfg)  # `rayalign dpo` on the RLAIF pairs, unchanged
    assert (tmp_path / "dpo" / "adapter_model.safetensors").is_file(), summary
