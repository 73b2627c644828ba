"""The pipeline's stages: each loads its job's own YAML (+ overrides) and calls that area's code — nothing more.

Every stage takes the RunContext and returns the outputs that later stages and the report need.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from app.config.errors import ConfigError
from app.config.loader import load_config
from app.config.paths import REPO_ROOT, rayalign_home
from app.config.pipeline import StageSpec
from app.config.registry import SCHEMAS, import_schema, schema_for
from app.pipeline.context import RunContext


def load_stage_config(ctx: RunContext, stage: StageSpec, extra: list[str] = (), default_schema: str | None = None):
    """The stage's job config: its YAML (or ``default_schema``'s defaults) + the pipeline's model/ray settings +
    the stage's own overrides."""
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
    return load_config(path, schema, [*shared, *extra, *stage.overrides])


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


def ingest(ctx: RunContext) -> dict[str, Any]:
    """Raw files → dataset artifact (app.data: validate, dedup, contamination, tokenize, pack)."""
    from app.data.pipeline import run_ingest

    if ctx.cfg.dataset:  # ingested before (an uploaded file the job API already processed): reuse it
        from app.data.artifact import load_artifact

        start_ray(ctx.cfg.ray)
        artifact = load_artifact(ctx.cfg.dataset)
        ctx.progress.event("stage", f"ingest: reusing dataset {artifact.id}")
        return {"artifact_path": str(artifact.path), "dataset_id": artifact.id, "manifest": artifact.manifest}
    cfg = load_stage_config(ctx, ctx.cfg.ingest)
    start_ray(cfg.ray)  # the first stage starts (or joins) the cluster; later stages' init_ray reuse it
    artifact = run_ingest(cfg, progress=False)
    return {"artifact_path": str(artifact.path), "dataset_id": artifact.id, "manifest": artifact.manifest}


def sft(ctx: RunContext) -> dict[str, Any]:
    """SFT LoRA on Ray Train (app.train); a job run's checkpoints are reported as progress while it trains."""
    from app.config.sft import training_hash
    from app.launch.runtime import run_name_for, storage_root
    from app.pipeline.watch import CheckpointWatcher
    from app.launch.run import run_sft

    cfg = load_stage_config(ctx, ctx.cfg.sft, [f"data.artifact={ctx.outputs['artifact_path']}"])
    run_dir = Path(storage_root(cfg.ray)) / run_name_for("sft", training_hash(cfg), cfg.ray)
    with CheckpointWatcher(run_dir, ctx.progress):
        outcome = run_sft(cfg)
    if outcome.status != "completed" or outcome.output_dir is None:
        raise RuntimeError(f"SFT run {outcome.run_name} ended '{outcome.status}' at step {outcome.step}")
    lineage = json.loads((outcome.output_dir / "rayalign_lineage.json").read_text())
    points = [(int(h.get("step", i + 1)), float(h["loss"])) for i, h in enumerate(outcome.history) if "loss" in h]
    return {"adapter_path": str(outcome.output_dir), "lineage": lineage, "sft_steps": outcome.step,
            "sft_resumed_from": outcome.resumed_from,
            "loss_histories": {**ctx.outputs.get("loss_histories", {}), "sft": points}}


def preference(ctx: RunContext) -> dict[str, Any]:
    """The alignment stage after SFT: ``preference.method`` picks DPO, a reward model, or PPO/GRPO against one."""
    return {"dpo": dpo, "reward": reward_model, "ppo": ppo}[ctx.cfg.preference.method](ctx)


def preference_data(ctx: RunContext, record_type: str = "preference", spec=None) -> tuple[str, str | None]:
    """(artifact path, dataset id) the stage trains on: its own ingest (``preference.ingest``, e.g. HH-RLHF) or, when
    that is off, the pipeline's ingest (a job-API job's upload); refused unless it holds ``record_type`` records."""
    from app.data.artifact import load_artifact

    spec = spec or ctx.cfg.preference
    method = getattr(spec, "method", "reward")
    if spec.ingest.enabled:
        from app.data.pipeline import run_ingest

        icfg = load_stage_config(ctx, spec.ingest)
        start_ray(icfg.ray)
        pairs = run_ingest(icfg, progress=False)
        artifact, dataset_id = str(pairs.path), pairs.id
    elif ctx.outputs.get("artifact_path"):
        artifact, dataset_id = ctx.outputs["artifact_path"], ctx.outputs.get("dataset_id")
    else:
        raise ConfigError(f"pipeline '{ctx.cfg.name}': the {method} stage has no data (enable preference.ingest)")
    kind = load_artifact(artifact).record_type
    if kind != record_type:
        raise ConfigError(f"pipeline '{ctx.cfg.name}': {method} needs a '{record_type}' dataset artifact, {artifact} is "
                          f"'{kind}' (set preference.ingest to an ingest config with record_type: {record_type})")
    return artifact, dataset_id


def dpo(ctx: RunContext) -> dict[str, Any]:
    """DPO on preference pairs (app.launch.preference), starting from the SFT adapter when there is one.

    The SFT adapter is both the policy's starting point and the frozen reference (``dpo.reference_adapter``); the DPO
    adapter then replaces it as the one that is registered (lineage method ``dpo``), gated, promoted and served.
    """
    from app.launch.preference import fit_preference

    artifact, dataset_id = preference_data(ctx)
    extra = [f"data.artifact={artifact}", f"output.dir={ctx.report_dir / 'dpo-adapter'}"]
    if ctx.outputs.get("adapter_path"):
        extra.append(f"dpo.reference_adapter={ctx.outputs['adapter_path']}")
    cfg = load_stage_config(ctx, ctx.cfg.preference, extra)
    start_ray(cfg.ray)
    ctx.progress.event("stage", f"dpo on {artifact}" + (" from the SFT adapter" if cfg.dpo.reference_adapter else ""))
    summary = fit_preference("dpo", cfg)
    out = Path(summary["output_dir"])
    history = preference_history(summary.get("checkpoint_path"))
    metrics = summary.get("metrics", {})
    return {"adapter_path": str(out), "lineage": json.loads((out / "rayalign_lineage.json").read_text()),
            "sft_adapter_path": ctx.outputs.get("adapter_path"), "preference_dataset_id": dataset_id,
            "dpo_metrics": {k: float(v) for k, v in metrics.items() if k.startswith(("eval", "train/"))},
            "loss_histories": {**ctx.outputs.get("loss_histories", {}), "dpo": history}}


def reward_model(ctx: RunContext, spec=None) -> dict[str, Any]:
    """A reward model (base + scalar head, Bradley–Terry) on preference pairs: the ``preference`` stage with method
    'reward' (a job-API ``reward`` job: the RM is what gets registered) or the RLHF ``reward`` stage (``spec``: the
    SFT adapter stays the pipeline's adapter; the ppo stage after it scores with this RM)."""
    from app.launch.preference import fit_preference

    spec = spec or ctx.cfg.preference
    artifact, dataset_id = preference_data(ctx, "preference", spec)
    cfg = load_stage_config(ctx, spec, [f"data.artifact={artifact}", f"output.dir={ctx.report_dir / 'reward-model'}"])
    start_ray(cfg.ray)
    ctx.progress.event("stage", f"reward model on {artifact}")
    summary = fit_preference("reward", cfg)
    out = Path(summary["output_dir"])
    metrics = summary.get("metrics", {})
    result = {"reward_model_path": str(out), "preference_dataset_id": dataset_id,
              "reward_metrics": {k: float(v) for k, v in metrics.items() if k.startswith(("eval", "train/"))},
              "loss_histories": {**ctx.outputs.get("loss_histories", {}),
                                 "reward": preference_history(summary.get("checkpoint_path"))}}
    if spec is ctx.cfg.preference:  # the RM is this pipeline's product: register it
        result |= {"adapter_path": str(out), "lineage": json.loads((out / "rayalign_lineage.json").read_text())}
    return result


def reward_stage(ctx: RunContext) -> dict[str, Any]:
    """The RLHF pipeline's reward model, between SFT and the ppo stage."""
    return reward_model(ctx, ctx.cfg.reward)


def ppo(ctx: RunContext) -> dict[str, Any]:
    """PPO/GRPO/RLOO on the Ray actor group (app.ppo), from the SFT adapter when SFT ran, scored by the reward model
    an earlier stage trained (or the stage config's ``reward.*``). Prompts: ``preference.ingest`` (a 'prompt'
    artifact) or the stage config's ``prompts.path``. The run folder sits in the report folder, so a re-run resumes."""
    from app.ppo.launch import run_ppo

    extra = [f"run.output_dir={ctx.report_dir / 'ppo'}"]
    if ctx.cfg.preference.ingest.enabled:
        extra.append(f"prompts.path={preference_data(ctx, 'prompt')[0]}")
    if ctx.outputs.get("adapter_path"):
        extra.append(f"init.adapter={ctx.outputs['adapter_path']}")
    if ctx.outputs.get("reward_model_path"):
        extra.append(f"reward.model_path={ctx.outputs['reward_model_path']}")
    cfg = load_stage_config(ctx, ctx.cfg.preference, extra)
    start_ray(cfg.ray)
    ctx.progress.event("stage", f"{cfg.algo.estimator} with reward {cfg.reward.kind}"
                       + (" from the SFT adapter" if cfg.init.adapter else ""))
    run_dir, history = run_ppo(cfg)
    out = run_dir / "adapter"
    last = history[-1] if history else {}
    return {"adapter_path": str(out), "lineage": json.loads((out / "rayalign_lineage.json").read_text()),
            "sft_adapter_path": ctx.outputs.get("adapter_path"), "ppo_run_dir": str(run_dir),
            "ppo_metrics": {k: v for k, v in last.items() if isinstance(v, float)},
            "loss_histories": {**ctx.outputs.get("loss_histories", {}),
                               "ppo": [(int(h["iteration"]), float(h["policy_loss"])) for h in history]}}


def preference_history(checkpoint_path: str | None) -> list[tuple[int, float]]:
    """(step, loss) points from the final checkpoint's manifest (the preference loop keeps its history there)."""
    if not checkpoint_path:
        return []
    from app.train.checkpoint import read_manifest

    manifest = read_manifest(Path(checkpoint_path)) or {}
    history = manifest.get("state", {}).get("history", [])
    return [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]


def register(ctx: RunContext) -> dict[str, Any]:
    """Register the adapter as the next version of its name (lineage read from its folder)."""
    spec = ctx.cfg.promote
    view = registry(ctx).register_adapter(spec.tenant, spec.name, ctx.outputs["adapter_path"])
    return {"registry_version": view.version, "registry_model": spec.name, "registry_uri": view.uri}


def evaluate(ctx: RunContext) -> dict[str, Any]:
    """Eval suites + gates on the registered version (app.eval); the decision is recorded on it in the registry."""
    from app.eval.runner import run_eval

    spec = ctx.cfg.promote
    extra = [f"registry.tenant={spec.tenant}", f"registry.name={spec.name}",
             f"registry.version={ctx.outputs['registry_version']}", f"output_dir={ctx.report_dir / 'eval'}"]
    if ctx.cfg.job.db_url:
        extra.append(f"registry.url={ctx.cfg.job.db_url}")
    cfg = load_stage_config(ctx, ctx.cfg.eval, extra, default_schema="eval")
    ctx.progress.status("evaluate", "eval gates running")
    result = run_eval(cfg)
    decision = result.decision.to_dict()
    gates = [{"name": o["name"], "metric": o["reason"], "value": o["value"], "threshold": o["bound"],
              "passed": o["status"] in ("pass", "skipped") or not o["blocking"], "status": o["status"],
              **{k: o.get(k) for k in ("ci_low", "ci_high", "n", "mde", "n_needed")}}
             for o in decision["outcomes"]]
    return {"gates": gates, "gates_passed": decision["passed"], "gate_decision": decision,
            "eval_metrics": result.metrics, "eval_report": str(result.report_md), "passed": decision["passed"],
            "detail": "" if decision["passed"] else f"gate {decision['decided_by']}: {decision['reason']}"}


def promote(ctx: RunContext) -> dict[str, Any]:
    """Promote to production when the gates passed, and point Serve's adapter folder at it (no redeploy)."""
    spec = ctx.cfg.promote
    if "gate_decision" not in ctx.outputs:
        return {"promoted": False, "detail": "no gate decision (eval disabled): registered, not promoted"}
    view = registry(ctx).promote(spec.tenant, spec.name, ctx.outputs["registry_version"], spec.alias)
    link = publish_adapter(view.uri, spec.tenant, spec.name, view.version)
    return {"promoted": True, "served_adapter_link": str(link)}


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


def serve_and_ask(ctx: RunContext) -> dict[str, Any]:
    """Start the OpenAI-compatible Serve app (app.serve) and send one chat request to the promoted adapter."""
    from openai import OpenAI

    from app.serve.app import run_app
    from app.serve.auth import hash_key

    spec, promote_spec = ctx.cfg.serve, ctx.cfg.promote
    if not ctx.outputs.get("promoted"):
        return {"passed": False, "detail": "nothing promoted, nothing to serve"}
    key = os.environ.get("RAYALIGN_API_KEY") or "ra-" + secrets.token_hex(16)
    os.environ["RAYALIGN_API_KEY"] = key
    # Pass the key's digest, not an env-var name: Serve replicas run in Ray workers started before this stage,
    # which never see an environment variable set now.
    tenants = f"tenants=[{{name: {promote_spec.tenant}, api_key_sha256: ['{hash_key(key)}']}}]"
    cfg = load_stage_config(ctx, spec, [tenants])
    url = run_app(cfg)
    try:
        client = OpenAI(base_url=url, api_key=key, timeout=600, max_retries=2)
        reply = client.chat.completions.create(model=promote_spec.name, max_tokens=spec.max_tokens, temperature=0,
                                               messages=[{"role": "user", "content": spec.sample_prompt}])
        text = reply.choices[0].message.content
    finally:
        if not spec.keep_running:
            from ray import serve

            serve.shutdown()
    return {"served_url": url.removesuffix("/v1"), "served_model": promote_spec.name, "sample_response": text}
