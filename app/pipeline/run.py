"""Run the pipeline top to bottom: ingest → SFT LoRA → [DPO | PPO] → register → eval gates → promote → Serve → 1 request.

Each stage is a function in ``app.pipeline.stages`` that loads its own job's YAML (plus the pipeline's overrides),
takes the earlier stages' typed results as arguments (``app.pipeline.results``) and returns its own; this module only
wires them, sequences them, times them, reports progress and writes the report.
The adapter is registered first (as a candidate version) so the gate decision is recorded on that version; a failed
gate stops before promotion (registered, never promoted), and the report says which gate and why.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

from app.config.loader import config_hash, dump_config
from app.config.paths import rayalign_home
from app.config.pipeline import PipelineConfig
from app.pipeline import stages
from app.pipeline.context import PipelineResult, RunContext, StageResult
from app.pipeline.progress import ProgressSink
from app.pipeline.results import Products, StageOutput
from app.pipeline.report import write_report

log = logging.getLogger(__name__)


def default_report_dir(cfg: PipelineConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return rayalign_home() / "pipelines" / f"{cfg.name}-{stamp}"


@dataclass(frozen=True)
class Stage:
    """One step of the plan: ``run(ctx, products)`` calls the stage function with its typed inputs taken from
    ``products``; its result is stored under ``roles`` (``Products`` fields), where later stages read it."""

    name: str
    enabled: bool
    run: Callable[[RunContext, Products], StageOutput]
    roles: tuple[str, ...]


def plan(cfg: PipelineConfig) -> list[Stage]:
    """The enabled/disabled stages in run order, each wired to the typed results it takes."""
    method = cfg.preference.method
    preference = {
        "dpo": lambda ctx, p: stages.dpo(ctx, p.sft, p.dataset),
        "reward": lambda ctx, p: stages.reward_model(ctx, p.dataset, ctx.cfg.preference),
        "ppo": lambda ctx, p: stages.ppo(ctx, p.sft, p.reward_model),
    }[method]
    return [
        Stage("ingest", cfg.ingest.enabled, lambda ctx, p: stages.ingest(ctx), ("dataset",)),
        Stage("sft", cfg.sft.enabled, lambda ctx, p: stages.sft(ctx, p.dataset), ("sft", "model")),
        Stage("reward", cfg.reward.enabled, lambda ctx, p: stages.reward_model(ctx, p.dataset, ctx.cfg.reward),
              ("reward_model",)),
        Stage(method, cfg.preference.enabled, preference, ("model",)),
        Stage("register", True, lambda ctx, p: stages.register(ctx, p.model), ("version",)),
        Stage("eval", cfg.eval.enabled, lambda ctx, p: stages.evaluate(ctx, p.version), ("verdict",)),
        Stage("promote", True, lambda ctx, p: stages.promote(ctx, p.version, p.verdict), ("promotion",)),
        Stage("serve", cfg.serve.enabled, lambda ctx, p: stages.serve_and_ask(ctx, p.promotion), ("served",)),
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
    ctx.config_hash = config_hash(cfg)
    ok, error = True, None
    for stage in plan(cfg):
        name = stage.name
        if not stage.enabled:
            ctx.results.append(StageResult(name, "skipped", 0.0))
            continue
        if not ok:
            ctx.results.append(StageResult(name, "stopped", 0.0, detail="an earlier stage did not pass"))
            continue
        ctx.progress.stage_started(name)
        start = time.perf_counter()
        try:
            value = stage.run(ctx, ctx.products)
            ctx.products.store(stage.roles, value)  # TypeError when the stage returned the wrong type
        except Exception as exc:  # noqa: BLE001 - recorded in the report, re-raised after it is written
            ctx.results.append(StageResult(name, "failed", time.perf_counter() - start, detail=f"{type(exc).__name__}: {exc}"))
            ctx.progress.stage_finished(name, "failed", ctx.results[-1].seconds, ctx.results[-1].detail)
            ok, error = False, exc
            continue
        passed = value.passed
        ctx.results.append(StageResult(name, "ok" if passed else "failed", time.perf_counter() - start, value,
                                       detail=value.detail if passed else (value.detail or "gate failed")))
        done = ctx.results[-1]
        ctx.progress.stage_finished(name, done.status, done.seconds, done.detail)
        ok = ok and passed
    result = PipelineResult(ok, out_dir / "report.md", ctx.results, ctx.outputs, time.perf_counter() - t0,
                            ctx.products)
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
