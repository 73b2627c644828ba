"""Run the pipeline top to bottom: ingest → SFT LoRA → [DPO | PPO] → register → eval gates → promote → Serve → 1 request.

Each stage is a function in ``app.pipeline.stages`` that loads its own job's YAML (plus the pipeline's overrides)
and calls that area's code; this module only sequences them, times them, reports progress and writes the report.
The adapter is registered first (as a candidate version) so the gate decision is recorded on that version; a failed
gate stops before promotion (registered, never promoted), and the report says which gate and why.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from app.config.loader import config_hash, dump_config
from app.config.paths import rayalign_home
from app.config.pipeline import PipelineConfig
from app.pipeline import stages
from app.pipeline.context import PipelineResult, RunContext, StageResult
from app.pipeline.progress import ProgressSink
from app.pipeline.report import write_report

log = logging.getLogger(__name__)


def default_report_dir(cfg: PipelineConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return rayalign_home() / "pipelines" / f"{cfg.name}-{stamp}"


def plan(cfg: PipelineConfig) -> list[tuple[str, bool, Callable[[RunContext], dict[str, Any]]]]:
    """(stage name, enabled, function) in run order."""
    return [
        ("ingest", cfg.ingest.enabled, stages.ingest),
        ("sft", cfg.sft.enabled, stages.sft),
        ("reward", cfg.reward.enabled, stages.reward_stage),
        (cfg.preference.method, cfg.preference.enabled, stages.preference),
        ("register", True, stages.register),
        ("eval", cfg.eval.enabled, stages.evaluate),
        ("promote", True, stages.promote),
        ("serve", cfg.serve.enabled, stages.serve_and_ask),
    ]


def run_pipeline(cfg: PipelineConfig, report_dir: str | Path | None = None,
                 progress: ProgressSink | None = None) -> PipelineResult:
    """Run every enabled stage in order, stop at the first failure or failed gate, always write the report.

    ``progress`` hears about every stage (the console draws it, a job-API job stores it); default: log only.
    """
    t0 = time.perf_counter()
    out_dir = Path(report_dir or cfg.report_dir or default_report_dir(cfg))
    ctx = RunContext(cfg=cfg, report_dir=out_dir, progress=progress or ProgressSink())
    stages.check_stage_configs(ctx)  # before anything runs or is written
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
        ctx.progress.stage_started(name)
        start = time.perf_counter()
        try:
            outputs = fn(ctx) or {}
        except Exception as exc:  # noqa: BLE001 - recorded in the report, re-raised after it is written
            ctx.results.append(StageResult(name, "failed", time.perf_counter() - start, detail=f"{type(exc).__name__}: {exc}"))
            ctx.progress.stage_finished(name, "failed", ctx.results[-1].seconds, ctx.results[-1].detail)
            ok, error = False, exc
            continue
        ctx.outputs.update(outputs)
        passed = outputs.get("passed", True)
        ctx.results.append(StageResult(name, "ok" if passed else "failed", time.perf_counter() - start, outputs,
                                       detail=outputs.get("detail", "") if passed else outputs.get("detail", "gate failed")))
        done = ctx.results[-1]
        ctx.progress.stage_finished(name, done.status, done.seconds, done.detail)
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
