"""DPOConfig: direct preference optimisation against reference log-probs precomputed into the artifact.

The training envelope is shared with every method (app/config/common.py); DPO adds the preference data section and
its ``dpo`` section, where the loss family (``loss_type``) lives and grows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from app.config.base import StrictModel
from app.config.common import TrainingConfig
from app.config.preference import PreferenceDataSpec, PreferenceTrainSpec


REFERENCE_FREE = ("simpo", "orpo")  # = app.core.preference_losses.REFERENCE_FREE_LOSSES (config stays torch-free)


class DPOSpec(StrictModel):
    """The preference loss and the reference model (math: app/core/preference_losses.py)."""

    loss_type: Literal["sigmoid", "ipo", "simpo", "orpo", "kto"] = Field(
        "sigmoid", description="'sigmoid' (DPO, Rafailov 2023), 'ipo' (Azar 2023), 'simpo' (Meng 2024: length-normalised, "
        "reference-free, margin simpo_gamma), 'orpo' (Hong 2024: SFT NLL + β·odds-ratio term, reference-free) or 'kto' "
        "(Ethayarajh 2024: unpaired desirable/undesirable rows, a record_type 'unpaired' artifact)")
    beta: float = Field(0.1, gt=0, description="β: strength of the implicit KL constraint to the reference (sigmoid, ipo, "
                        "kto); simpo: reward scale β (paper: 2.0–2.5); orpo: λ, the weight of the odds-ratio term (paper: 0.1)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="conservative DPO: assumed fraction of flipped labels (sigmoid, simpo)")
    simpo_gamma: float | None = Field(None, ge=0, description="simpo only: target reward margin γ (None: 0.5, TRL's default)")
    desirable_weight: float | None = Field(None, gt=0, description="kto only: λ_D, weight of desirable rows (None: 1.0)")
    undesirable_weight: float | None = Field(None, gt=0, description="kto only: λ_U, weight of undesirable rows (None: 1.0)")
    reference_adapter: str | None = Field(
        None, description="SFT adapter folder used as the reference AND as the policy's starting point (None: the base model)"
    )
    precompute_batch_size: int = Field(8, ge=1, description="pairs per Ray Data batch when precomputing reference log-probs")
    precompute_cpus: float = Field(1.0, gt=0, description="CPUs for the reference-scoring Ray Data actor")

    @property
    def needs_reference(self) -> bool:
        """False for the reference-free objectives: no reference log-probs are precomputed or read."""
        return self.loss_type not in REFERENCE_FREE

    @model_validator(mode="after")
    def _options_fit_the_loss(self) -> "DPOSpec":
        t = self.loss_type
        if t in REFERENCE_FREE and self.reference_adapter:
            raise ValueError(f"dpo.reference_adapter: loss_type '{t}' is reference-free and uses no reference model; "
                             "unset it (or use sigmoid/ipo/kto)")
        if self.label_smoothing and t not in ("sigmoid", "simpo"):
            raise ValueError(f"dpo.label_smoothing: only sigmoid and simpo use it, not loss_type '{t}'")
        if self.simpo_gamma is not None and t != "simpo":
            raise ValueError(f"dpo.simpo_gamma: only loss_type 'simpo' uses it, not '{t}'")
        if (self.desirable_weight is not None or self.undesirable_weight is not None) and t != "kto":
            raise ValueError(f"dpo.desirable_weight/undesirable_weight: only loss_type 'kto' uses them, not '{t}'")
        return self


class DPOConfig(TrainingConfig):
    """DPO: one model in memory (the policy); reference log-probs are read from the artifact."""

    data: PreferenceDataSpec = Field(default_factory=PreferenceDataSpec, description="preference data")
    train: PreferenceTrainSpec = Field(default_factory=PreferenceTrainSpec, description="step budget, batch (pairs), eval cadence")
    dpo: DPOSpec = Field(default_factory=DPOSpec, description="loss and reference")

    @model_validator(mode="after")
    def _reference_adapter_needs_lora(self) -> "DPOConfig":
        if self.dpo.reference_adapter and self.method != "lora":
            raise ValueError(f"dpo.reference_adapter continues that LoRA adapter: it needs method 'lora', not '{self.method}'")
        return self


def check_artifact_fits_loss(cfg: DPOConfig, record_type: str) -> None:
    """One-line error when the artifact's record type does not fit ``dpo.loss_type``: KTO trains on 'unpaired' rows
    (prompt/completion/label), every other loss on 'preference' pairs. Called by the launcher once the artifact is known."""
    want = "unpaired" if cfg.dpo.loss_type == "kto" else "preference"
    if record_type == want:
        return
    if record_type == "unpaired":
        raise ValueError(f"data.artifact {cfg.data.artifact}: KTO data (record_type 'unpaired') needs dpo.loss_type 'kto', "
                         f"not '{cfg.dpo.loss_type}'")
    raise ValueError(f"data.artifact {cfg.data.artifact}: record_type {record_type!r}, dpo.loss_type "
                     f"'{cfg.dpo.loss_type}' needs '{want}'" + (" (ingest KTO rows with record_type: unpaired)" if want == "unpaired" else ""))
