"""`rayalign pipeline --config FILE [key=value ...]`: raw data to a served, gated adapter in one command.

Also what ``python -m jobs.pipeline`` (every job-API job) runs: a run that belongs to a job reports its progress and
its own outcome into the job store, so the runner can tell a failure from a preemption.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app.commands import say

DRAWS_STAGES = True  # the quiet console draws one line per pipeline stage (app.console)
HELP = "run ingest -> SFT LoRA -> [DPO|PPO] -> eval gates -> register -> promote -> serve -> sample request"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/pipeline/demo.yaml", help="pipeline YAML (default: the demo)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. preference.enabled=true")


def resolve(args: argparse.Namespace) -> None:
    """Load the config and fix the report folder once (the console log goes inside it)."""
    if getattr(args, "cfg", None) is None:
        from app.config.loader import load_config
        from app.config.pipeline import PipelineConfig
        from app.pipeline.run import default_report_dir

        args.cfg = load_config(args.config, PipelineConfig, args.overrides)
        args.report_dir = Path(args.cfg.report_dir or default_report_dir(args.cfg))
        args.stage_key = f"pipeline:{args.cfg.name}"


def log_file(args: argparse.Namespace) -> Path:
    resolve(args)
    return args.report_dir / "console.log"


def run(args: argparse.Namespace) -> int:
    from app.jobs_api.progress import job_progress
    from app.pipeline.progress import FanOut
    from app.pipeline.run import run_pipeline, summary_lines

    resolve(args)
    cfg = args.cfg
    job = job_progress(cfg.job)
    progress = FanOut(job, getattr(args, "console_sink", None))
    try:
        result = run_pipeline(cfg, report_dir=args.report_dir, progress=progress)
    except Exception as exc:
        if job is not None:
            job.finish("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    if job is not None:
        if result.ok:
            job.finish("succeeded", adapter_path=result.outputs.get("adapter_path"),
                       fine_tuned_model=result.outputs.get("registry_model"))
        else:
            failed = next((r for r in result.results if r.status == "failed"), None)
            job.finish("failed", error=f"stage {failed.name}: {failed.detail}" if failed else "stopped")
    say(args, "\n".join(summary_lines(result)))
    return 0 if result.ok else 1
