"""The pipeline's stages: each loads its job's own YAML (+ overrides) and calls that area's code — nothing more.

Every stage takes the RunContext plus the earlier stages' typed results it needs, and returns its own typed result
(``app.pipeline.results``): ``sft(ctx, data: DatasetRef) -> TrainedModel``, ``evaluate(ctx, version:
RegisteredVersion) -> EvalVerdict``, ... The ``*_config`` functions build a stage's job config from those inputs
(no Ray, no model: what the unit tests check).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from app.config.errors import ConfigError
from app.config.loader import deep_merge, expand_home, load_config, parse_overrides, read_yaml, validate_config
from app.config.paths import REPO_ROOT, rayalign_home
from app.config.pipeline import StageSpec
from app.config.registry import SCHEMAS, import_schema, schema_for
from app.pipeline.context import RunContext
from app.pipeline.results import DatasetRef, EvalVerdict, Promotion, RegisteredVersion, Served, TrainedModel


def load_stage_config(ctx: RunContext, stage: StageSpec, extra: list[str] = (), default_schema: str | None = None,
                      inputs: dict[str, Any] | None = None):
    """The stage's job config: its YAML (or ``default_schema``'s defaults) + the pipeline's model/ray settings and
    placement (``extra``: output folders, registry URL; the stage's overrides may change them) + the stage's own
    overrides + ``inputs``: the fields an earlier stage's typed result fills (e.g. ``{"data": {"artifact": path}}``
    from a ``DatasetRef``). A stage override of an input field is refused: one of the two would be lost.
    Validated once, after all of it (model checks that span fields, e.g. reward.kind=model needs reward.model_path)."""
    if not stage.config and default_schema is None:
        raise ConfigError(f"pipeline '{ctx.cfg.name}': an enabled stage has no config file")
    path = (REPO_ROOT / stage.config).resolve() if stage.config else None
    if path is not None and not path.is_file():
        raise ConfigError(f"pipeline '{ctx.cfg.name}': stage config not found: {stage.config}")
    schema = schema_for(path, REPO_ROOT / "configs") if path else import_schema(SCHEMAS[default_schema])
    shared = [f"model.source={ctx.cfg.model.source}", f"ray.address={ctx.cfg.ray.address}"]
    if ctx.cfg.ray.num_cpus:
        shared.append(f"ray.num_cpus={ctx.cfg.ray.num_cpus}")
    shared = [o for o in shared if o.split("=", 1)[0].split(".")[0] in schema.model_fields]
    overrides = [*shared, *extra, *stage.overrides]
    if not inputs:
        return load_config(path, schema, overrides)
    clash = sorted({o.split("=", 1)[0].strip() for o in stage.overrides} & set(dotted_keys(inputs)))
    if clash:
        raise ConfigError(f"pipeline '{ctx.cfg.name}': a stage override sets {clash[0]}, which an earlier stage's "
                          f"result provides ({stage.config or default_schema}); remove it from the stage's overrides")
    data = deep_merge(read_yaml(path) if path else {}, parse_overrides(overrides))
    source = f"{stage.config or '<' + default_schema + ' defaults>'} (pipeline '{ctx.cfg.name}' stage)"
    return validate_config(expand_home(deep_merge(data, inputs)), schema, source)


def dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}, "c": 2}`` -> ``["a.b", "c"]``."""
    keys = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        keys += dotted_keys(value, name + ".") if isinstance(value, dict) else [name]
    return keys


def check_stage_configs(ctx: RunContext) -> None:
    """Load every enabled stage's YAML + overrides up front, so a typo fails in a second, not after the stages
    before it ran for minutes (values known only at run time, e.g. the artifact path, are filled in later)."""
    c = ctx.cfg
    stages = [(c.ingest, c.ingest.enabled and not c.dataset), (c.sft, c.sft.enabled),
              (c.preference.ingest, c.preference.enabled and c.preference.ingest.enabled),
              (c.preference, c.preference.enabled and c.preference.method in ("dpo", "reward")),
              (c.reward, c.reward.enabled), (c.reward.ingest, c.reward.enabled and c.reward.ingest.enabled),
              (c.serve, c.serve.enabled)]
    for spec, enabled in stages:
        if enabled and spec.config:
            load_stage_config(ctx, spec)
    if c.eval.enabled:
        load_stage_config(ctx, c.eval, default_schema="eval")


def registry(ctx: RunContext):
    from app.registry.store import Registry

    return Registry(ctx.cfg.job.db_url)


def start_ray(spec, attempts: int = 3) -> None:
    """init_ray, retried: Ray gives a new node a fixed 30 s to register, which a loaded machine can miss."""
    import time

    import ray

    from app.launch.runtime import init_ray

    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")  # GCS-side wait for the node to register
    for attempt in range(1, attempts + 1):
        try:
            init_ray(spec)
            return
        except Exception as exc:  # noqa: BLE001 - only the start-up timeout is retried
            if "timed out during startup" not in str(exc) or attempt == attempts:
                raise
            ray.shutdown()
            time.sleep(5)


def ingest(ctx: RunContext) -> DatasetRef:
    """Raw files → dataset artifact (app.data: validate, dedup, contamination, tokenize, pack)."""
    from app.data.pipeline import run_ingest

    if ctx.cfg.dataset:  # ingested before (an uploaded file the job API already processed): reuse it
        from app.data.artifact import load_artifact

        start_ray(ctx.cfg.ray)
        artifact = load_artifact(ctx.cfg.dataset)
        ctx.progress.event("stage", f"ingest: reusing dataset {artifact.id}")
        return DatasetRef.of(artifact)
    cfg = load_stage_config(ctx, ctx.cfg.ingest)
    start_ray(cfg.ray)  # the first stage starts (or joins) the cluster; later stages' init_ray reuse it
    return DatasetRef.of(run_ingest(cfg, progress=False))


def sft_config(ctx: RunContext, data: DatasetRef | None):
    """The SFT job config, training on ``data`` (None: the stage config's own ``data.artifact``)."""
    inputs = {"data": {"artifact": str(data.path)}} if data is not None else None
    cfg = load_stage_config(ctx, ctx.cfg.sft, inputs=inputs)
    if not cfg.data.artifact:
        raise ConfigError(f"pipeline '{ctx.cfg.name}': the sft stage has no dataset (enable ingest, set dataset, "
                          "or give the sft config a data.artifact)")
    return cfg


def sft(ctx: RunContext, data: DatasetRef | None) -> TrainedModel:
    """SFT LoRA on Ray Train (app.train) on ``data``; a job run's checkpoints are reported as progress."""
    from app.config.sft import training_hash
    from app.launch.run import run_sft
    from app.launch.runtime import run_name_for, storage_root
    from app.pipeline.watch import CheckpointWatcher

    cfg = sft_config(ctx, data)
    run_dir = Path(storage_root(cfg.ray)) / run_name_for("sft", training_hash(cfg), cfg.ray)
    with CheckpointWatcher(run_dir, ctx.progress):
        outcome = run_sft(cfg)
    if outcome.status != "completed" or outcome.output_dir is None:
        raise RuntimeError(f"SFT run {outcome.run_name} ended '{outcome.status}' at step {outcome.step}")
    points = [(int(h.get("step", i + 1)), float(h["loss"])) for i, h in enumerate(outcome.history) if "loss" in h]
    return TrainedModel(stage="sft", path=Path(outcome.output_dir), run_id=outcome.run_name,
                        lineage=read_lineage(outcome.output_dir), data=data, losses=tuple(points),
                        steps=outcome.step, resumed_from=tuple(outcome.resumed_from))


def read_lineage(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "rayalign_lineage.json").read_text())


def preference_data(ctx: RunContext, record_type: str, spec, data: DatasetRef | None) -> DatasetRef:
    """The dataset the stage trains on: its own ingest (``spec.ingest``, e.g. HH-RLHF) or, when that is off, the
    pipeline's dataset ``data`` (a job-API job's upload); refused unless it holds ``record_type`` records."""
    method = getattr(spec, "method", "reward")
    if spec.ingest.enabled:
        from app.data.pipeline import run_ingest

        icfg = load_stage_config(ctx, spec.ingest)
        start_ray(icfg.ray)
        data = DatasetRef.of(run_ingest(icfg, progress=False))
    elif data is None:
        raise ConfigError(f"pipeline '{ctx.cfg.name}': the {method} stage has no data (enable preference.ingest)")
    if data.record_type != record_type:
        raise ConfigError(f"pipeline '{ctx.cfg.name}': {method} needs a '{record_type}' dataset artifact, {data.path} "
                          f"is '{data.record_type}' (set preference.ingest to an ingest config with record_type: "
                          f"{record_type})")
    return data


def dpo_config(ctx: RunContext, sft_adapter: TrainedModel | None, pairs: DatasetRef):
    """The DPO job config: ``pairs``, and the SFT adapter as the policy's start and frozen reference."""
    inputs: dict[str, Any] = {"data": {"artifact": str(pairs.path)}}
    if sft_adapter is not None:
        inputs["dpo"] = {"reference_adapter": str(sft_adapter.path)}
    return load_stage_config(ctx, ctx.cfg.preference, [f"output.dir={ctx.report_dir / 'dpo-adapter'}"], inputs=inputs)


def dpo(ctx: RunContext, sft_adapter: TrainedModel | None, data: DatasetRef | None) -> TrainedModel:
    """DPO on preference pairs (app.launch.preference), starting from the SFT adapter when there is one.

    The SFT adapter is both the policy's starting point and the frozen reference (``dpo.reference_adapter``); the DPO
    adapter then replaces it as the one that is registered (lineage method ``dpo``), gated, promoted and served.
    """
    from app.launch.preference import fit_preference

    pairs = preference_data(ctx, "preference", ctx.cfg.preference, data)
    cfg = dpo_config(ctx, sft_adapter, pairs)
    start_ray(cfg.ray)
    ctx.progress.event("stage", f"dpo on {pairs.path}" + (" from the SFT adapter" if sft_adapter else ""))
    summary = fit_preference("dpo", cfg)
    return trained_preference("dpo", summary, pairs, sft_adapter)


def trained_preference(stage: str, summary: dict[str, Any], pairs: DatasetRef,
                       parent: TrainedModel | None = None) -> TrainedModel:
    """A DPO adapter or reward model from ``fit_preference``'s summary."""
    out = Path(summary["output_dir"])
    metrics = summary.get("metrics", {})
    return TrainedModel(stage=stage, path=out, run_id=summary["run_name"], lineage=read_lineage(out), data=pairs,
                        parent=parent, losses=tuple(preference_history(summary.get("checkpoint_path"))),
                        metrics={k: float(v) for k, v in metrics.items() if k.startswith(("eval", "train/"))},
                        steps=summary.get("step"))


def reward_model(ctx: RunContext, data: DatasetRef | None, spec) -> TrainedModel:
    """A reward model (base + scalar head, Bradley–Terry) on preference pairs: the ``preference`` stage with method
    'reward' (a job-API ``reward`` job: the RM is what gets registered) or the RLHF ``reward`` stage (``spec`` =
    ``cfg.reward``: the SFT adapter stays the pipeline's model; the ppo stage after it scores with this RM)."""
    from app.launch.preference import fit_preference

    pairs = preference_data(ctx, "preference", spec, data)
    cfg = load_stage_config(ctx, spec, [f"output.dir={ctx.report_dir / 'reward-model'}"],
                            inputs={"data": {"artifact": str(pairs.path)}})
    start_ray(cfg.ray)
    ctx.progress.event("stage", f"reward model on {pairs.path}")
    return trained_preference("reward", fit_preference("reward", cfg), pairs)


def ppo_config(ctx: RunContext, sft_adapter: TrainedModel | None, rm: TrainedModel | None,
               prompts: DatasetRef | None):
    """The PPO job config: prompts, the SFT adapter to start from, the reward model to score with (each if given)."""
    inputs: dict[str, Any] = {}
    if prompts is not None:
        inputs["prompts"] = {"path": str(prompts.path)}
    if sft_adapter is not None:
        inputs["init"] = {"adapter": str(sft_adapter.path)}
    if rm is not None:
        inputs["reward"] = {"model_path": str(rm.path)}
    return load_stage_config(ctx, ctx.cfg.preference, [f"run.output_dir={ctx.report_dir / 'ppo'}"], inputs=inputs)


def ppo(ctx: RunContext, sft_adapter: TrainedModel | None, rm: TrainedModel | None) -> TrainedModel:
    """PPO/GRPO/RLOO on the Ray actor group (app.ppo), from the SFT adapter when SFT ran, scored by the reward model
    an earlier stage trained (or the stage config's ``reward.*``). Prompts: ``preference.ingest`` (a 'prompt'
    artifact) or the stage config's ``prompts.path``. The run folder sits in the report folder, so a re-run resumes."""
    from app.ppo.runner import run_ppo

    spec = ctx.cfg.preference
    prompts = preference_data(ctx, "prompt", spec, None) if spec.ingest.enabled else None
    cfg = ppo_config(ctx, sft_adapter, rm, prompts)
    start_ray(cfg.ray)
    ctx.progress.event("stage", f"{cfg.algo.estimator} with reward {cfg.reward.kind}"
                       + (" from the SFT adapter" if sft_adapter else ""))
    run_dir, history = run_ppo(cfg)
    out = run_dir / "adapter"
    last = history[-1] if history else {}
    return TrainedModel(stage="ppo", path=out, run_id=run_dir.name, lineage=read_lineage(out), data=prompts,
                        parent=sft_adapter, reward_model=rm, run_dir=run_dir, steps=len(history),
                        losses=tuple((int(h["iteration"]), float(h["policy_loss"])) for h in history),
                        metrics={k: v for k, v in last.items() if isinstance(v, float)})


def preference_history(checkpoint_path: str | None) -> list[tuple[int, float]]:
    """(step, loss) points from the final checkpoint's manifest (the preference loop keeps its history there)."""
    if not checkpoint_path:
        return []
    from app.train.checkpoint import read_manifest

    manifest = read_manifest(Path(checkpoint_path)) or {}
    history = manifest.get("state", {}).get("history", [])
    return [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]


def register(ctx: RunContext, model: TrainedModel | None) -> RegisteredVersion:
    """Register the trained model as the next version of its name (lineage read from its folder)."""
    if model is None:
        raise ConfigError(f"pipeline '{ctx.cfg.name}': nothing was trained to register (enable sft or preference)")
    spec = ctx.cfg.promote
    view = registry(ctx).register_adapter(spec.tenant, spec.name, str(model.path))
    return RegisteredVersion(tenant=spec.tenant, name=spec.name, version=view.version, uri=view.uri)


def eval_config(ctx: RunContext, version: RegisteredVersion):
    """The eval job config: gates on the registered ``version`` (the decision is recorded on it)."""
    extra = [f"output_dir={ctx.report_dir / 'eval'}"]
    if ctx.cfg.job.db_url:
        extra.append(f"registry.url={ctx.cfg.job.db_url}")
    inputs = {"registry": {"tenant": version.tenant, "name": version.name, "version": version.version}}
    return load_stage_config(ctx, ctx.cfg.eval, extra, default_schema="eval", inputs=inputs)


def evaluate(ctx: RunContext, version: RegisteredVersion) -> EvalVerdict:
    """Eval suites + gates on the registered version (app.eval); the decision is recorded on it in the registry."""
    from app.eval.runner import run_eval

    cfg = eval_config(ctx, version)
    ctx.progress.status("evaluate", "eval gates running")
    result = run_eval(cfg)
    decision = result.decision.to_dict()
    gates = tuple({"name": o["name"], "metric": o["reason"], "value": o["value"], "threshold": o["bound"],
                   "passed": o["status"] in ("pass", "skipped") or not o["blocking"], "status": o["status"],
                   **{k: o.get(k) for k in ("ci_low", "ci_high", "n", "mde", "n_needed")}}
                  for o in decision["outcomes"])
    return EvalVerdict(gates=gates, decision=decision, metrics=result.metrics, report_path=Path(result.report_md),
                       passed=decision["passed"],
                       detail="" if decision["passed"] else f"gate {decision['decided_by']}: {decision['reason']}")


def promote(ctx: RunContext, version: RegisteredVersion, verdict: EvalVerdict | None) -> Promotion:
    """Promote to production when the gates passed, and point Serve's adapter folder at it (no redeploy)."""
    if verdict is None:
        return Promotion(promoted=False, version=version,
                         detail="no gate decision (eval disabled): registered, not promoted")
    view = registry(ctx).promote(version.tenant, version.name, version.version, ctx.cfg.promote.alias)
    link = publish_adapter(view.uri, version.tenant, version.name, view.version)
    return Promotion(promoted=True, version=version, link=link)


def publish_adapter(uri: str, tenant: str, name: str, version: int, root: Path | None = None) -> Path:
    """Make ``<adapters root>/<tenant>/<name>`` resolve to ``uri`` for Serve's directory resolver, atomically.

    The resolver only follows links that stay inside the tenant's own folder, so the version is copied under
    ``<root>/<tenant>/.versions/<name>/v<version>`` first (a dot name is never an adapter name); the name link is
    then swapped with one rename.
    """
    import shutil

    root = Path(root or rayalign_home() / "adapters").resolve()
    src = Path(uri).resolve()
    version_dir = root / tenant / ".versions" / name / f"v{version}"
    if not version_dir.exists():
        shutil.copytree(src, version_dir)
    link = root / tenant / name
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{name}.{secrets.token_hex(4)}")
    tmp.symlink_to(version_dir, target_is_directory=True)
    os.replace(tmp, link)
    return link


def serve_and_ask(ctx: RunContext, promotion: Promotion) -> Served:
    """Start the OpenAI-compatible Serve app (app.serve) and send one chat request to the promoted version."""
    from openai import OpenAI

    from app.serve.app import run_app
    from app.serve.auth import hash_key

    spec, version = ctx.cfg.serve, promotion.version
    if not promotion.promoted:
        return Served(url=None, model=version.name, sample_response=None, passed=False,
                      detail="nothing promoted, nothing to serve")
    key = os.environ.get("RAYALIGN_API_KEY") or "ra-" + secrets.token_hex(16)
    os.environ["RAYALIGN_API_KEY"] = key
    # Pass the key's digest, not an env-var name: Serve replicas run in Ray workers started before this stage,
    # which never see an environment variable set now.
    tenants = [{"name": version.tenant, "api_key_sha256": [hash_key(key)]}]
    cfg = load_stage_config(ctx, spec, inputs={"tenants": tenants})
    url = run_app(cfg)
    try:
        client = OpenAI(base_url=url, api_key=key, timeout=600, max_retries=2)
        reply = client.chat.completions.create(model=version.name, max_tokens=spec.max_tokens, temperature=0,
                                               messages=[{"role": "user", "content": spec.sample_prompt}])
        text = reply.choices[0].message.content
    finally:
        if not spec.keep_running:
            from ray import serve

            serve.shutdown()
    return Served(url=url.removesuffix("/v1"), model=version.name, sample_response=text)
