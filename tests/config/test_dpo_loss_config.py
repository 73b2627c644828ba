"""dpo.loss_type's options: illegal combinations are one-line ConfigErrors naming the key; data must fit the loss."""

from __future__ import annotations

import pytest

from app.config.dpo import DPOConfig, check_artifact_fits_loss
from app.config.errors import ConfigError
from app.config.loader import validate_config


@pytest.mark.parametrize("dpo, key", [
    ({"loss_type": "orpo", "reference_adapter": "adapters/sft"}, "dpo.reference_adapter"),
    ({"loss_type": "simpo", "reference_adapter": "adapters/sft"}, "dpo.reference_adapter"),
    ({"loss_type": "ipo", "label_smoothing": 0.1}, "dpo.label_smoothing"),
    ({"loss_type": "orpo", "label_smoothing": 0.1}, "dpo.label_smoothing"),
    ({"loss_type": "kto", "label_smoothing": 0.1}, "dpo.label_smoothing"),
    ({"loss_type": "sigmoid", "simpo_gamma": 1.0}, "dpo.simpo_gamma"),
    ({"loss_type": "orpo", "desirable_weight": 1.5}, "dpo.desirable_weight"),
])
def test_illegal_combinations_name_the_key(dpo, key):
    with pytest.raises(ConfigError) as info:
        validate_config({"dpo": dpo}, DPOConfig, "dpo.yaml")
    message = str(info.value)
    assert key in message and "\n" not in message and message.startswith("dpo.yaml: ")


def test_legal_combinations_and_reference_need():
    simpo = validate_config({"dpo": {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 1.0, "label_smoothing": 0.1}}, DPOConfig)
    orpo = validate_config({"dpo": {"loss_type": "orpo"}}, DPOConfig)
    kto = validate_config({"dpo": {"loss_type": "kto", "undesirable_weight": 1.33, "reference_adapter": "a"}}, DPOConfig)
    assert not simpo.dpo.needs_reference and not orpo.dpo.needs_reference
    assert kto.dpo.needs_reference and DPOConfig().dpo.needs_reference


def test_kto_data_for_dpo_and_pairs_for_kto_are_one_line_errors():
    dpo = validate_config({"data": {"artifact": "a/kto"}, "dpo": {"loss_type": "sigmoid"}}, DPOConfig)
    with pytest.raises(ValueError, match=r"data.artifact a/kto: KTO data \(record_type 'unpaired'\) needs dpo.loss_type 'kto'"):
        check_artifact_fits_loss(dpo, "unpaired")
    kto = validate_config({"data": {"artifact": "a/hh"}, "dpo": {"loss_type": "kto"}}, DPOConfig)
    with pytest.raises(ValueError, match=r"data.artifact a/hh: record_type 'preference', dpo.loss_type 'kto' needs 'unpaired'"):
        check_artifact_fits_loss(kto, "preference")
    check_artifact_fits_loss(dpo, "preference")
    check_artifact_fits_loss(kto, "unpaired")
