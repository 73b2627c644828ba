"""Ray job entrypoint for the end-to-end pipeline (also what every job-API job runs).

    ray job submit --working-dir . -- python -m jobs.pipeline --config configs/pipeline/demo.yaml
    python -m jobs.pipeline --config configs/tiny/pipeline_smoke.yaml name=try-1

Validates the YAML as a PipelineConfig, runs it, prints the summary. A job-API run reports its own outcome into the
job store before exiting, so the runner can tell a failure from a preemption. Inside ``ray job submit`` a config's
``ray.address: local`` joins the submitting cluster instead of starting a private one.
"""

from __future__ import annotations

import sys

from jobs.entry import join_submitting_cluster, run_job


def pipeline(args) -> int:
    from app.config.loader import load_config
    from app.config.pipeline import PipelineConfig
    from app.pipeline.progress import JobProgress
    from app.pipeline.run import run_pipeline, summary_lines

    cfg = load_config(args.config, PipelineConfig, args.overrides)
    join_submitting_cluster(cfg)
    progress = JobProgress(cfg.job)
    try:
        result = run_pipeline(cfg)
    except Exception as exc:
        progress.finish("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    outputs = result.outputs
    if result.ok:
        progress.finish("succeeded", adapter_path=outputs.get("adapter_path"),
                        fine_tuned_model=outputs.get("registry_model"))
    else:
        failed = next((r for r in result.results if r.status == "failed"), None)
        progress.finish("failed", error=f"stage {failed.name}: {failed.detail}" if failed else "stopped")
    print("\n" + "\n".join(summary_lines(result)))  # own line: Ray's progress bars leave the cursor mid-line
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.pipeline", __doc__, pipeline, argv)


if __name__ == "__main__":
    sys.exit(main())
