"""Run the pipeline top to bottom: ingest → SFT LoRA → [DPO | PPO] → register → eval gates → promote → Serve → 1 request.

Each stage is a function in ``app.pipeline.stages`` that loads its own job's YAML (plus the pipeline's overrides)
and calls that area's code; this module only sequences them, times them, reports progress and writes the report.
The adapter is registered first (as a candidate version) so the gate decision is recorded on that version; a failed
gate stops before promotion (registered, never promoted), and the report says which gate and why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from app.config.loader import config_hash, dump_config
from app.config.paths import rayalign_home
from app.config.pipeline import PipelineConfig
from app.pipeline.progress import JobProgress

log = logging.getLogger(__name__)


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
    progress: JobProgress
    outputs: dict[str, Any] = field(default_factory=dict)
    results: list[StageResult] = field(default_factory=list)


@dataclass
class PipelineResult:
    ok: bool
    report_path: Path
    results: list[StageResult]
    outputs: dict[str, Any]
    seconds: float


def default_report_dir(cfg: PipelineConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return rayalign_home() / "pipelines" / f"{cfg.name}-{stamp}"


def plan(cfg: PipelineConfig) -> list[tuple[str, bool, Callable[[RunContext], dict[str, Any]]]]:
    """(stage name, enabled, function) in run order."""
    from app.pipeline import stages

    return [
        ("ingest", cfg.ingest.enabled, stages.ingest),
        ("sft", cfg.sft.enabled, stages.sft),
        (cfg.preference.method, cfg.preference.enabled, stages.preference),
        ("register", True, stages.register),
        ("eval", cfg.eval.enabled, stages.evaluate),
        ("promote", True, stages.promote),
        ("serve", cfg.serve.enabled, stages.serve_and_ask),
    ]


def run_pipeline(cfg: PipelineConfig, report_dir: str | Path | None = None) -> PipelineResult:
    """Run every enabled stage in order, stop at the first failure or failed gate, always write the report."""
    from app.pipeline.report import write_report

    t0 = time.perf_counter()
    from app.pipeline.stages import check_stage_configs

    out_dir = Path(report_dir or cfg.report_dir or default_report_dir(cfg))
    ctx = RunContext(cfg=cfg, report_dir=out_dir, progress=JobProgress(cfg.job))
    check_stage_configs(ctx)  # before anything runs or is written
    out_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out_dir / "pipeline.resolved.yaml")
    ctx.outputs["pipeline_config_hash"] = config_hash(cfg)
    ok, error = True, None
    for name, enabled, fn in plan(cfg):
        if not enabled:
            ctx.results.append(StageResult(name, "skipped", 0.0))
            continue
        if not ok:
            ctx.results.append(StageResult(name, "stopped", 0.0, detail="an earlier stage did not pass"))
            continue
        ctx.progress.event("stage", f"{name} started")
        start = time.perf_counter()
        try:
            outputs = fn(ctx) or {}
        except Exception as exc:  # noqa: BLE001 - recorded in the report, re-raised after it is written
            ctx.results.append(StageResult(name, "failed", time.perf_counter() - start, detail=f"{type(exc).__name__}: {exc}"))
            ok, error = False, exc
            continue
        ctx.outputs.update(outputs)
        passed = outputs.get("passed", True)
        ctx.results.append(StageResult(name, "ok" if passed else "failed", time.perf_counter() - start, outputs,
                                       detail=outputs.get("detail", "") if passed else outputs.get("detail", "gate failed")))
        ctx.progress.event("stage", f"{name} {'done' if passed else 'failed'} in {time.perf_counter() - start:.1f}s")
        ok = ok and passed
    result = PipelineResult(ok, out_dir / "report.md", ctx.results, ctx.outputs, time.perf_counter() - t0)
    write_report(ctx, result)
    if error is not None:
        raise error
    return result


def summary_lines(result: PipelineResult) -> list[str]:
    """The short summary printed at the end of `rayalign pipeline`."""
    lines = [f"pipeline {'PASSED' if result.ok else 'STOPPED'} in {result.seconds / 60:.1f} min"]
    for r in result.results:
        lines.append(f"  {r.name:<9} {r.status:<8} {r.seconds:7.1f}s  {r.detail}".rstrip())
    metrics = result.outputs.get("eval_metrics") or {}
    if "ppl_base" in metrics and "ppl_adapter" in metrics:
        lines.append(f"  held-out perplexity: base {metrics['ppl_base']:.3f} -> adapter {metrics['ppl_adapter']:.3f}")
    for key in ("dataset_id", "adapter_path", "registry_version", "served_model", "sample_response"):
        if key in result.outputs:
            value = str(result.outputs[key]).replace("\n", " ")
            lines.append(f"  {key}: {value[:160]}")
    lines.append(f"report: {result.report_path}")
    return lines
