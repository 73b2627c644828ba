"""What the pipeline's stages share and return: the run context, one stage's result, the whole run's result.

Its own module so that the sequencer (run.py), the stages (stages.py) and the report (report.py) all import it and
none of them imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config.pipeline import PipelineConfig
from app.pipeline.progress import ProgressSink


@dataclass
class StageResult:
    name: str
    status: str  # ok | skipped | failed | stopped
    seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


@dataclass
class RunContext:
    """What stages share: the config, the report folder, progress sink, and earlier stages' outputs."""

    cfg: PipelineConfig
    report_dir: Path
    progress: ProgressSink = field(default_factory=ProgressSink)
    outputs: dict[str, Any] = field(default_factory=dict)
    results: list[StageResult] = field(default_factory=list)


@dataclass
class PipelineResult:
    ok: bool
    report_path: Path
    results: list[StageResult]
    outputs: dict[str, Any]
    seconds: float
