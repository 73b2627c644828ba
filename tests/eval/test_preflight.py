"""Bad input is refused in one line before any scoring starts: a suite file with a missing field, the candidate's
own base as judge, a judge tokenizer that cannot read the prompt, a scorer model on another base SHA."""

from __future__ import annotations

import json
import shutil

import pytest

from app.config.errors import ConfigError
from app.config.eval import EvalConfig
from tests.eval.conftest import make_tiny_reward_model


def test_suite_file_with_a_missing_field_fails_before_ray(tiny_adapters, tmp_path):
    import ray

    from app.eval.runner import run_eval

    bad = tmp_path / "qa.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n" + json.dumps({"question": "q2"}) + "\n")
    cfg = EvalConfig.model_validate({"model": {"source": "tiny:llama"}, "adapter": str(tiny_adapters["good"]),
                                     "data": {"heldout": str(bad)}, "output_dir": str(tmp_path / "out"),
                                     "tracking": {"enabled": False}})
    was_up = ray.is_initialized()
    with pytest.raises(ConfigError, match=r"qa.jsonl line 2: field 'answer' must be a non-empty string") as err:
        run_eval(cfg)
    assert "\n" not in str(err.value) and ray.is_initialized() == was_up  # nothing was started


def test_judge_must_not_be_the_candidates_base(tiny_model_dir):
    from app.eval.preflight import judge_folder
    from app.models.loader import base_sha

    cfg = EvalConfig.model_validate({"model": {"source": "tiny:llama"}, "judge": {"kind": "causal_lm"}})
    with pytest.raises(ConfigError, match=r"judge.source: tiny:llama is the candidate's own base model"):
        judge_folder(cfg, base_sha(tiny_model_dir))
    allowed = cfg.model_copy(update={"judge": cfg.judge.model_copy(update={"allow_base": True})})
    assert judge_folder(allowed, base_sha(tiny_model_dir)) == tiny_model_dir
    with pytest.raises(ConfigError, match="judge.source: a reward_model judge needs a reward model folder"):
        judge_folder(EvalConfig.model_validate({"judge": {"kind": "reward_model"}}), "x")


def test_judge_tokenizer_that_cannot_read_the_prompt(tiny_model_dir, tmp_path):
    from app.eval.preflight import check_judge_reads

    check_judge_reads(tiny_model_dir, "causal_lm", ["What is 2 plus 3?"])  # a readable prompt passes
    with pytest.raises(ConfigError, match=r"judge prompt 0 is \d+ tokens, over the judge's context of \d+"):
        check_judge_reads(tiny_model_dir, "causal_lm", ["seven " * 5000])
    plain = tmp_path / "no_template"
    shutil.copytree(tiny_model_dir, plain)
    cfg_file = plain / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_file.read_text())
    tok_cfg.pop("chat_template", None)
    cfg_file.write_text(json.dumps(tok_cfg))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ConfigError, match=r"judge.source: the tokenizer in .*no_template has no chat template"):
        check_judge_reads(plain, "causal_lm", ["What is 2 plus 3?"])


def test_scorer_on_another_base_sha(tiny_model_dir, tmp_path):
    from app.eval.preflight import reward_folder

    good = make_tiny_reward_model(tiny_model_dir, tmp_path / "rm")
    assert reward_folder(str(good), "safety_scorer.source") == good
    other = make_tiny_reward_model(tiny_model_dir, tmp_path / "rm_other", base_sha_override="f" * 64)
    with pytest.raises(ConfigError, match=r"safety_scorer.source: .*rm_other was trained on base ffffffffffff, but "
                                          r"tiny:llama is now [0-9a-f]{12}"):
        reward_folder(str(other), "safety_scorer.source")
    with pytest.raises(ConfigError, match="safety_scorer.source: .*not a reward model folder"):
        reward_folder(str(tiny_model_dir), "safety_scorer.source")
