"""Ray Tune sweeps over SFT/reward/DPO configs: each trial is a FUNCTION trainable that launches its own TorchTrainer.

This is the Ray 2.60 pattern (``Tuner(trainer)`` is deprecated): the trial function builds the trial's config from
the base YAML + sweep overrides + sampled ``key=value`` pairs, re-validates it through the job's schema, and runs
``trainer_for(...).fit()`` (the same builder every method uses) with ``TuneReportCallback`` so worker reports reach Tune (and ASHA).

    summary = run_sweep(SweepConfig(...))
    # <out>/results.csv, results.md, <metric>_vs_params.png, best_adapter/ (with lineage + sweep info), trials/<id>/

MLflow: the driver opens one parent run (sweep params, best metric, table + PNG artifacts); each trial's rank-0
worker opens a child run (tag ``mlflow.parentRunId``) with its full config and per-step metrics.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from app.config.errors import ConfigError
from app.config.loader import load_config, read_yaml
from app.config.paths import rayalign_home
from app.config.sweep import ParamSpace, SweepConfig
from app.launch.runtime import check_run_storage, init_ray, validate_run_name

log = logging.getLogger(__name__)


def job_schema(job: str):
    from app.config.dpo import DPOConfig
    from app.config.reward import RewardConfig
    from app.config.sft import SFTConfig

    return {"dpo": DPOConfig, "reward": RewardConfig, "sft": SFTConfig}[job]


def trial_config(sweep: SweepConfig, sampled: dict[str, Any], extra: list[str] = ()):
    """The trial's job config: base YAML + sweep overrides + sampled values (+ extra), validated by the job's schema."""
    pairs = [f"{key}={json.dumps(value)}" for key, value in sorted(sampled.items())]
    return load_config(sweep.base_config, job_schema(sweep.job), [*sweep.overrides, *pairs, *extra])


def tune_domain(space: ParamSpace):
    """A ParamSpace as a Ray Tune search domain."""
    from ray import tune

    if space.kind == "grid":
        return tune.grid_search(list(space.values))
    if space.kind == "choice":
        return tune.choice(list(space.values))
    if space.kind == "uniform":
        return tune.uniform(space.low, space.high)
    if space.kind == "loguniform":
        return tune.loguniform(space.low, space.high)
    return tune.randint(int(space.low), int(space.high))


def sweep_output_dir(sweep: SweepConfig) -> Path:
    return Path(sweep.output_dir).expanduser() if sweep.output_dir else rayalign_home() / "sweeps" / validate_run_name(sweep.name)


def trial_run_name(sweep: SweepConfig, trial_id: str) -> str:
    """A trial's Ray Train run name, which is also its MLflow child run's name."""
    return f"{sweep.name}-{trial_id}"


def run_trial(sampled: dict[str, Any], sweep_dict: dict[str, Any], parent_run_id: str | None) -> None:
    """Tune function trainable: validate this trial's config, fit one TorchTrainer, export its final model."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from app.launch.trainer import trainer_for

    sweep = SweepConfig.model_validate(sweep_dict)
    trial_id = tune.get_context().get_trial_id()
    out = sweep_output_dir(sweep) / "trials" / trial_id
    cfg = trial_config(sweep, sampled, [f"output.dir={out}"])
    if sweep.job == "dpo" and cfg.dpo.needs_reference:
        from app.data.reference_logprobs import has_reference_logprobs, reference_identity

        if not has_reference_logprobs(cfg.data.artifact, reference_identity(cfg.model, cfg.dpo.reference_adapter)):
            raise ConfigError("this trial's reference model differs from the base config's; sweeping the reference is not supported")
    trainer = trainer_for(sweep.job, cfg, trial_run_name(sweep, trial_id), parent_run_id, callbacks=[TuneReportCallback()])
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    # The model is exported by the driver (results_table) from the last reported checkpoint: a trial that Tune
    # stops when it reaches ASHA's last rung is killed before it could get here.


def build_search(sweep: SweepConfig):
    """(param_space, search_alg or None) for the configured search strategy."""
    param_space = {key: tune_domain(space) for key, space in sweep.search_space.items()}
    if sweep.search != "optuna":
        return param_space, None
    try:
        from ray.tune.search.optuna import OptunaSearch

        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("search 'optuna' needs the optuna package (pip install optuna); or use search 'random'") from None
    return param_space, OptunaSearch(seed=sweep.seed)


def run_sweep(sweep: SweepConfig) -> dict[str, Any]:
    """Run the sweep on Ray Tune; write the results table, the metric-vs-parameter PNG and the best adapter."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from app.launch.placement import ReleaseOrphanedPlacementGroups

    # Absolute, so trials still find it where a user turned Tune's per-trial chdir back on (RAY_CHDIR_TO_TRIAL_DIR=1).
    sweep = sweep.model_copy(update={"base_config": str(Path(sweep.base_config).resolve())})
    trial_config(sweep, {}, [])  # the base config must validate before any trial starts
    out = sweep_output_dir(sweep)
    out.mkdir(parents=True, exist_ok=True)
    init_ray(sweep.ray)
    if sweep.job == "dpo":  # once, in the driver: every trial then reads the same reference columns
        from app.launch.preference import ensure_reference_logprobs

        ensure_reference_logprobs(trial_config(sweep, {}, []))
    parent = None
    if sweep.tracking.enabled:
        from app.tracking.tracker import MlflowTracker

        parent = MlflowTracker(sweep.tracking, sweep.name, sweep.model_dump(mode="json"))
    param_space, search_alg = build_search(sweep)
    scheduler = None
    if sweep.asha.enabled:
        a = sweep.asha
        # Tune kills a trial whose step reaches ASHA's max_t; one past the budget lets trials that survive every rung
        # end on their own, so their TorchTrainer shuts down cleanly (the rungs are the same: grace * rf^k < max_t).
        scheduler = ASHAScheduler(time_attr="step", max_t=a.max_t + 1, grace_period=a.grace_period, reduction_factor=a.reduction_factor)
    trainable = tune.with_parameters(run_trial, sweep_dict=sweep.model_dump(mode="json"), parent_run_id=parent.run_id if parent else None)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"CPU": 0.01}),  # the trial only waits (Tune refuses 0); its TorchTrainer workers reserve the CPUs
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=sweep.metric, mode=sweep.mode, scheduler=scheduler, search_alg=search_alg,
            num_samples=sweep.num_samples, max_concurrent_trials=sweep.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(name=validate_run_name(sweep.name), storage_path=check_run_storage(sweep.ray),
                                  callbacks=[ReleaseOrphanedPlacementGroups()]),
    )
    grid = tuner.fit()
    rows = results_table(grid, sweep)
    write_table(rows, sweep, out)
    png = plot_metric_vs_params(rows, sweep, out / f"{sweep.metric.replace('/', '_')}_vs_params.png")
    best = keep_best_adapter(rows, sweep, out)
    summary = {"trials": len(rows), "statuses": {s: sum(r["status"] == s for r in rows) for s in ("finished", "stopped early", "error")},
               "best": best, "output_dir": str(out), "png": str(png), "parent_run_id": parent.run_id if parent else None}
    if parent is not None:
        if best:
            parent.log_metrics({f"best/{sweep.metric}": best["metric"]}, 0)
        for f in (out / "results.csv", out / "results.md", png):
            parent.client.log_artifact(parent.run_id, str(f))
        tag_child_runs(parent, rows, sweep)
        parent.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def tag_child_runs(parent, rows: list[dict[str, Any]], sweep: SweepConfig) -> None:
    """Tag each trial's MLflow child run with its sweep outcome; end the runs of trials Tune killed as KILLED.

    A trial that ASHA stops is killed mid-step, so its rank-0 worker never closes its run, which would otherwise
    stay RUNNING in MLflow forever.
    """
    client = parent.client
    status_of = {trial_run_name(sweep, row["trial_id"]): row["status"] for row in rows}
    children = client.search_runs([parent.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'")
    for run in children:
        outcome = status_of.get(run.info.run_name)
        if outcome is None:
            continue
        client.set_tag(run.info.run_id, "rayalign.trial_status", outcome)
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "FAILED" if outcome == "error" else "KILLED")


def export_final_model(checkpoint_path: str | None, out: Path) -> bool:
    """Copy a trial's model out of its last reported checkpoint; False when that checkpoint is not a final one."""
    from ray.train import Checkpoint

    from app.train.output import export_output

    if not checkpoint_path:
        return False
    try:
        export_output(Checkpoint(checkpoint_path), out)
    except RuntimeError:  # an intermediate checkpoint (trial stopped early): no model/ folder
        return False
    return True


def results_table(grid, sweep: SweepConfig) -> list[dict[str, Any]]:
    """One row per trial: id, status, sampled params, last step, metric, held-out accuracy/margin, model folder."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(result.path).name
        model_dir = sweep_output_dir(sweep) / "trials" / str(trial_id)
        finished = export_final_model(metrics.get("checkpoint_path"), model_dir)
        row = {"trial_id": trial_id, "status": "finished" if finished else ("error" if result.error else "stopped early")}
        row |= {key: (result.config or {}).get(key) for key in sweep.search_space}
        row |= {"step": metrics.get("step"), sweep.metric: metrics.get(sweep.metric)}
        row |= {k: metrics.get(k) for k in ("eval/accuracy", "eval/margin", "eval_before/accuracy") if k != sweep.metric}
        row["model_dir"] = str(model_dir) if finished else ""
        rows.append(row)
    sign = 1 if sweep.mode == "max" else -1
    rows.sort(key=lambda r: -sign * r[sweep.metric] if isinstance(r[sweep.metric], (int, float)) else math.inf)
    return rows


def write_table(rows: list[dict[str, Any]], sweep: SweepConfig, out: Path) -> None:
    """results.csv and a Markdown results.md (best first)."""
    import csv

    if not rows:
        return
    cols = list(rows[0])
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(c for c in cols if c != "model_dir") + " |", "|" + "---|" * (len(cols) - 1)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols if c != "model_dir") + " |" for r in rows]
    (out / "results.md").write_text(f"# sweep {sweep.name}: {sweep.metric} ({sweep.mode})\n\n" + "\n".join(lines) + "\n", encoding="utf-8")


def plot_metric_vs_params(rows: list[dict[str, Any]], sweep: SweepConfig, path: Path) -> Path:
    """One panel per searched key: the trial metric against the key's value (log x for positive ranges > 1 decade)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(sweep.search_space)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r[key], r[sweep.metric], r["status"]) for r in rows if isinstance(r[sweep.metric], (int, float))]
        for status, marker in (("finished", "o"), ("stopped early", "x"), ("error", "s")):
            xs = [p[0] for p in pts if p[2] == status]
            ys = [p[1] for p in pts if p[2] == status]
            if xs:
                ax.scatter([str(x) if isinstance(x, str) else x for x in xs], ys, marker=marker, label=status)
        values = [p[0] for p in pts if isinstance(p[0], (int, float)) and not isinstance(p[0], bool)]
        if values and min(values) > 0 and max(values) / min(values) > 10:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(sweep.metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{sweep.name}: {sweep.metric} per trial")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def keep_best_adapter(rows: list[dict[str, Any]], sweep: SweepConfig, out: Path) -> dict[str, Any] | None:
    """Copy the best FINISHED trial's model to ``<out>/best_adapter``, adding the sweep to its lineage."""
    finished = [r for r in rows if r["model_dir"] and isinstance(r[sweep.metric], (int, float))]
    if not finished:
        log.warning("sweep %s: no trial finished; no best adapter kept", sweep.name)
        return None
    best = finished[0]  # rows are sorted best first
    dest = out / "best_adapter"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(best["model_dir"], dest)
    lineage_path = dest / "rayalign_lineage.json"
    lineage = json.loads(lineage_path.read_text(encoding="utf-8"))
    lineage["sweep"] = {"name": sweep.name, "trial_id": best["trial_id"], "metric": sweep.metric, "value": best[sweep.metric],
                        "params": {k: best[k] for k in sweep.search_space}}
    lineage_path.write_text(json.dumps(lineage, indent=2, sort_keys=True), encoding="utf-8")
    return {"trial_id": best["trial_id"], "metric": best[sweep.metric], "params": lineage["sweep"]["params"], "adapter": str(dest)}


def load_sweep(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """Load a sweep YAML (base_config resolved relative to the current directory, as every config path is)."""
    cfg = load_config(path, SweepConfig, overrides)
    if not Path(cfg.base_config).is_file():
        raise ConfigError(f"{path}: base_config {cfg.base_config!r} not found")
    read_yaml(cfg.base_config)
    return cfg
