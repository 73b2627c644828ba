"""Typed stage results: what each pipeline stage returns and the next stage takes as an argument.

    ingest   -> DatasetRef                      sft(ctx, data)                 -> TrainedModel
    dpo / reward / ppo(ctx, sft, data[, reward_model]) -> TrainedModel
    register(ctx, model) -> RegisteredVersion        evaluate(ctx, version)         -> EvalVerdict
    promote(ctx, version, verdict) -> Promotion      serve_and_ask(ctx, promotion)  -> Served

``Products`` holds them by role while the run goes on (the sequencer stores each stage's result there and reads the
next stage's inputs from it); ``Products.outputs()`` flattens them into the dict the report, the printed summary and
the job store read (same keys as before stages were typed: ``adapter_path``, ``registry_version``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class StageOutput:
    """Common to every stage result: whether the run may go on, and why not."""

    passed: bool = True
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class DatasetRef(StageOutput):
    """Where a dataset artifact written by app.data lies and what it holds (record_type sft | preference | prompt)."""

    id: str
    path: Path
    record_type: str
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, artifact) -> "DatasetRef":
        """From an ``app.data.artifact`` artifact (anything with id, path, record_type, manifest)."""
        return cls(id=artifact.id, path=Path(artifact.path), record_type=artifact.record_type,
                   manifest=dict(artifact.manifest))


@dataclass(frozen=True, kw_only=True)
class TrainedModel(StageOutput):
    """A trained adapter (sft, dpo, ppo) or reward model: its folder, the run that made it and its lineage.

    ``losses``: (step, loss) per optimizer step (per iteration for PPO); ``parent``: the SFT adapter it started
    from; ``reward_model``: the RM a PPO run was scored by; ``data``: what it trained on.
    """

    stage: str  # sft | dpo | reward | ppo
    path: Path
    run_id: str
    lineage: dict[str, Any]
    data: DatasetRef | None = None
    parent: "TrainedModel | None" = None
    reward_model: "TrainedModel | None" = None
    losses: tuple[tuple[int, float], ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int | None = None
    resumed_from: tuple[int, ...] = ()
    run_dir: Path | None = None


@dataclass(frozen=True, kw_only=True)
class RegisteredVersion(StageOutput):
    """A registry version of the trained model (a candidate until promoted)."""

    tenant: str
    name: str
    version: int
    uri: str


@dataclass(frozen=True, kw_only=True)
class EvalVerdict(StageOutput):
    """The eval gates' decision on a registered version (``passed`` stops the run before promotion when False)."""

    gates: tuple[dict[str, Any], ...]
    decision: dict[str, Any]
    metrics: dict[str, float]
    report_path: Path


@dataclass(frozen=True, kw_only=True)
class Promotion(StageOutput):
    """Whether the version went to production, and the folder link Serve's resolver reads it through."""

    promoted: bool
    version: RegisteredVersion
    link: Path | None = None


@dataclass(frozen=True, kw_only=True)
class Served(StageOutput):
    """The Serve app's address and its answer to the sample request."""

    url: str | None
    model: str
    sample_response: str | None


@dataclass
class Products:
    """The typed results of one run so far, by role. ``model`` is what the run registers: the SFT adapter, replaced
    by the preference stage's DPO/PPO adapter or reward model; ``reward_model`` is the RLHF reward stage's RM."""

    dataset: DatasetRef | None = None
    sft: TrainedModel | None = None
    reward_model: TrainedModel | None = None
    model: TrainedModel | None = None
    version: RegisteredVersion | None = None
    verdict: EvalVerdict | None = None
    promotion: Promotion | None = None
    served: Served | None = None

    def store(self, roles: tuple[str, ...], result: StageOutput) -> None:
        """Keep ``result`` under each role; TypeError if a role's type does not match (a stage returned the wrong
        thing, e.g. a dict of strings)."""
        for role in roles:
            want = ROLE_TYPES[role]
            if not isinstance(result, want):
                raise TypeError(f"a stage stored as {role!r} returned {type(result).__name__}, "
                                f"expected {want.__name__}")
            setattr(self, role, result)

    def outputs(self) -> dict[str, Any]:
        """The flat view the report, ``summary_lines`` and the job store read."""
        out: dict[str, Any] = {}
        if self.dataset:
            out |= {"artifact_path": str(self.dataset.path), "dataset_id": self.dataset.id,
                    "manifest": self.dataset.manifest}
        trained: list[TrainedModel] = []
        for m in (self.sft, self.reward_model, self.model):  # without a preference stage `model` is the SFT adapter
            if m is not None and all(m is not t for t in trained):
                trained.append(m)
        histories = {}
        for m in trained:
            histories[m.stage] = list(m.losses)
            if m.stage in ("dpo", "reward", "ppo") and m.metrics:
                out[f"{m.stage}_metrics"] = dict(m.metrics)
        if histories:
            out["loss_histories"] = histories
        if self.sft:
            out |= {"sft_steps": self.sft.steps, "sft_resumed_from": list(self.sft.resumed_from)}
        if self.reward_model:
            out["reward_model_path"] = str(self.reward_model.path)
            if self.reward_model.data:
                out["preference_dataset_id"] = self.reward_model.data.id
        if self.model:
            out |= {"adapter_path": str(self.model.path), "lineage": self.model.lineage}
            if self.model.parent:
                out["sft_adapter_path"] = str(self.model.parent.path)
            if self.model.stage in ("dpo", "reward") and self.model.data:
                out["preference_dataset_id"] = self.model.data.id
            if self.model.stage == "reward":
                out["reward_model_path"] = str(self.model.path)
            if self.model.run_dir:
                out[f"{self.model.stage}_run_dir"] = str(self.model.run_dir)
        if self.version:
            out |= {"registry_version": self.version.version, "registry_model": self.version.name,
                    "registry_uri": self.version.uri}
        if self.verdict:
            v = self.verdict
            out |= {"gates": list(v.gates), "gates_passed": v.passed, "gate_decision": v.decision,
                    "eval_metrics": v.metrics, "eval_report": str(v.report_path)}
        if self.promotion:
            out["promoted"] = self.promotion.promoted
            if self.promotion.link:
                out["served_adapter_link"] = str(self.promotion.link)
        if self.served and self.served.url:
            out |= {"served_url": self.served.url, "served_model": self.served.model,
                    "sample_response": self.served.sample_response}
        return out


ROLE_TYPES: dict[str, type] = {"dataset": DatasetRef, "sft": TrainedModel, "reward_model": TrainedModel,
                               "model": TrainedModel, "version": RegisteredVersion, "verdict": EvalVerdict,
                               "promotion": Promotion, "served": Served}
