"""What the pipeline's stages share and return: the run context, one stage's result, the whole run's result.

Its own module so that the sequencer (run.py), the stages (stages.py) and the report (report.py) all import it and
none of them imports another. The stages' typed results themselves are in ``app.pipeline.results``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config.pipeline import PipelineConfig
from app.pipeline.progress import ProgressSink
from app.pipeline.results import Products, StageOutput


@dataclass
class StageResult:
    name: str
    status: str  # ok | skipped | failed | stopped
    seconds: float
    value: StageOutput | None = None  # the stage's typed result (None when it did not run or failed)
    detail: str = ""


@dataclass
class RunContext:
    """What stages share: the config, the report folder, the progress sink, and the typed results so far."""

    cfg: PipelineConfig
    report_dir: Path
    progress: ProgressSink = field(default_factory=ProgressSink)
    products: Products = field(default_factory=Products)
    results: list[StageResult] = field(default_factory=list)
    config_hash: str = ""

    @property
    def outputs(self) -> dict[str, Any]:
        """The flat view of ``products`` the report reads (+ the pipeline config's hash)."""
        return {"pipeline_config_hash": self.config_hash, **self.products.outputs()}


@dataclass
class PipelineResult:
    ok: bool
    report_path: Path
    results: list[StageResult]
    outputs: dict[str, Any]  # flat view for the summary and the job store (keys: adapter_path, registry_model, ...)
    seconds: float
    products: Products = field(default_factory=Products)
