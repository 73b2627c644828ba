"""SimPO, ORPO (reference-free) and KTO (unpaired rows) through the DPO loop on real Ray Train: they learn."""

from __future__ import annotations

import pytest

from app.config.dpo import DPOConfig
from app.config.errors import ConfigError
from app.config.loader import load_config
from app.config.paths import REPO_ROOT
from tests.pref.test_kto import tiny_unpaired_artifact  # noqa: F401 - fixture

pytestmark = pytest.mark.ray


def tiny_dpo(artifact, tmp_path, name, *overrides) -> DPOConfig:
    return load_config(REPO_ROOT / "configs/tiny/dpo_sigmoid.yaml", DPOConfig, [
        f"data.artifact={artifact}", f"ray.storage_path={tmp_path / 'runs'}", f"ray.run_name={name}",
        f"output.dir={tmp_path / name}", "checkpoint.every_steps=100", *overrides])


def assert_learned(m: dict) -> None:
    assert m["eval/loss"] < m["eval_before/loss"], m
    assert m["eval/accuracy"] > m["eval_before/accuracy"] and m["eval/accuracy"] >= 0.7, m
    assert m["eval/margin"] > m["eval_before/margin"], m


@pytest.mark.e2e  # ~60 s of Ray (two runs): over CI's 20 s budget; the KTO test below covers the loop in CI
def test_simpo_and_orpo_learn_without_a_reference(ray_local, tiny_preference_artifact, tmp_path):
    from app.data.artifact import load_artifact
    from app.launch.preference import fit_preference

    simpo = fit_preference("dpo", tiny_dpo(tiny_preference_artifact, tmp_path, "simpo", "train.max_steps=10",
                                           "dpo.loss_type=simpo", "dpo.beta=2.0", "dpo.simpo_gamma=0.5"))
    assert_learned(simpo["metrics"])
    orpo = fit_preference("dpo", tiny_dpo(tiny_preference_artifact, tmp_path, "orpo", "train.max_steps=6",
                                          "dpo.loss_type=orpo", "dpo.beta=0.5", "scaling.num_workers=2"))
    assert_learned(orpo["metrics"])
    # reference-free: nothing was precomputed into the artifact
    artifact = load_artifact(tiny_preference_artifact)
    assert "reference_logprobs" not in artifact.manifest and "ref_chosen_logp" not in artifact.read_table().column_names


def test_kto_learns_on_unpaired_rows_and_refuses_pairs(ray_local, tiny_unpaired_artifact, tiny_preference_artifact, tmp_path):
    from app.launch.preference import fit_preference

    kto = fit_preference("dpo", tiny_dpo(tiny_unpaired_artifact, tmp_path, "kto", "train.max_steps=6", "dpo.loss_type=kto",
                                         "dpo.beta=0.5", "dpo.undesirable_weight=1.0", "scaling.num_workers=2"))
    m = kto["metrics"]
    assert m["eval/pairs"] == 16  # rows of the validation split
    assert abs(m["eval_before/margin"]) < 1e-4  # policy == reference
    assert_learned(m)
    with pytest.raises(ConfigError, match=r"KTO data \(record_type 'unpaired'\) needs dpo.loss_type 'kto'"):
        fit_preference("dpo", tiny_dpo(tiny_unpaired_artifact, tmp_path, "dpo-on-kto"))
    with pytest.raises(ConfigError, match=r"dpo.loss_type 'kto' needs 'unpaired'"):
        fit_preference("dpo", tiny_dpo(tiny_preference_artifact, tmp_path, "kto-on-pairs", "dpo.loss_type=kto"))
