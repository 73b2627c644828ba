"""`rayalign eval`: run the gate suites on an adapter vs its base as Ray Data jobs, decide, record, report.

    result = run_eval(load_config("configs/eval/smollm2_gates.yaml", EvalConfig))
    result.decision.passed, result.decision.decided_by, result.report_md

Flow: resolve base (+ its SHA) and adapter (path or registry version) → suite rows → Ray Data ``map_batches``
with ``SuiteWorker`` actors → metrics → pairwise judge (second Ray Data job, both answer orders) → ``core.gates``
decision (vs the base, and vs the current production version's stored metrics on the same slice) → stored on the
registry artifact (+ MLflow) → markdown + PNG report.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from app.config.errors import ConfigError
from app.config.eval import EvalConfig, GatesConfig
from app.config.loader import config_hash, load_config
from app.config.paths import REPO_ROOT, rayalign_home
from app.core import gates as G
from app.eval.heldout import (read_general_text, read_preference_pairs, read_qa, read_redteam_prompts,
                              resolve_data_path)

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    decision: G.GateDecision
    metrics: dict[str, float]
    report_md: Path
    report_png: Path
    artifact_ref: str | None


def load_gates(cfg: EvalConfig) -> GatesConfig:
    path = Path(cfg.gates_file)
    return load_config(path if path.is_absolute() else REPO_ROOT / path, GatesConfig)


def build_suite_rows(cfg: EvalConfig, gates: GatesConfig) -> list[dict[str, str]]:
    """One row per scored item: {"suite": name, "payload": JSON}. Perplexity takes the file's tail, task its head.

    The generation suites come first: Ray Data batches are consecutive rows (``generation.rows_per_call``; by default
    all rows of a worker in one call), so a generation suite is generated as a whole in length-sorted chunks.
    """
    rows: list[dict[str, str]] = []

    def add(suite: str, items: list[dict]) -> None:
        rows.extend({"suite": suite, "payload": json.dumps({"id": i, **item})} for i, item in enumerate(items))

    judged = gates.judge.enabled and cfg.judge.kind != "none"
    need_task = gates.task.enabled or gates.production.enabled or judged
    need_ppl = gates.perplexity.enabled or gates.conditioning.enabled or gates.production.enabled
    qa = read_qa(resolve_data_path(cfg.data.heldout)) if need_ppl or need_task else []
    if need_task:
        add("task", qa[: max(cfg.data.task_limit, cfg.judge.limit if judged else 0)])
    if gates.safety.enabled:
        add("safety", read_redteam_prompts(resolve_data_path(cfg.data.redteam), cfg.data.redteam_limit))
    if need_ppl:
        held = qa[-cfg.data.perplexity_limit:]
        if gates.conditioning.enabled and len(held) > 1:
            # row i is also scored with the answer of row i+1 (a cycle: no answer stays with its question)
            held = [dict(r, other_answer=held[(i + 1) % len(held)]["answer"]) for i, r in enumerate(held)]
        add("ppl", held)
    if gates.forgetting.enabled:
        add("general", read_general_text(cfg.data.general, cfg.data.general_limit, cfg.data.general_words))
    if gates.regression.enabled:
        add("benchmark", read_preference_pairs(resolve_data_path(cfg.data.benchmark), cfg.data.benchmark_offset,
                                               cfg.data.benchmark_limit))
    return rows


def benchmark_key(cfg: EvalConfig) -> str:
    """Identity of the benchmark slice: the stored base score is only comparable on exactly this slice."""
    d = cfg.data
    return f"hh-pref-acc:{Path(d.benchmark).name}:{d.benchmark_offset}:{d.benchmark_limit}:{d.max_length}"


def suite_key(cfg: EvalConfig) -> str:
    """Identity of the perplexity + task slices: production's stored metrics are only comparable on exactly these."""
    d, g = cfg.data, cfg.generation
    return (f"{Path(d.heldout).name}:ppl{d.perplexity_limit}:task{d.task_limit}x{g.task_max_new_tokens}:"
            f"len{d.max_length}")


@dataclass(frozen=True)
class ProductionRef:
    """What the no-regression gate compares against: production's stored metrics, or why there is nothing to compare."""

    label: str | None = None
    metrics: dict[str, float] | None = None
    skip_reason: str | None = None
    items: dict[str, list[dict]] | None = None  # production's per-item records (item_records.json): paired gates


def find_production(registry, tenant: str, name: str, version: int | None, base_sha: str, key: str) -> ProductionRef:
    """The current production version of (tenant, name), if it is a comparable reference for this candidate."""
    prod = registry.list(tenant, name, stage="production")
    if not prod:
        return ProductionRef(skip_reason=f"no production version of {tenant}/{name} yet")
    p = prod[0]
    if p.version == version:
        return ProductionRef(skip_reason=f"{p.ref} is the production version itself")
    if p.base_sha != base_sha:
        return ProductionRef(skip_reason=f"{p.ref} was trained on base {p.base_sha[:12]}, not {base_sha[:12]}")
    if p.gate_report.get("suite_key") != key or "ppl_adapter" not in p.eval_metrics:
        return ProductionRef(skip_reason=f"{p.ref} was not evaluated on this slice ({key}); re-evaluate it with this config")
    items_file = p.gate_report.get("item_records")
    items = json.loads(Path(items_file).read_text()) if items_file and Path(items_file).is_file() else None
    return ProductionRef(label=f"production {p.ref}", metrics={**p.eval_metrics, "version": float(p.version)},
                         items=items)


def evaluate_gates(gates: GatesConfig, metrics: dict[str, float], swap: G.SwapStats | None,
                   stored_bench_base: float | None, production: ProductionRef | None = None,
                   records: dict[str, list[dict]] | None = None) -> G.GateDecision:
    """Metrics → ordered gate outcomes → decision (pure bookkeeping; the rules live in app.core.gates).

    With the suites' per-item ``records`` every gate gets its 95% interval and the interval rule
    (``G.interval_gate``: fail / pass / underpowered); with metrics alone (no items) the point rules apply.
    """
    if records and gates.intervals.enabled:
        from app.eval.gating import interval_outcomes

        return G.decide(interval_outcomes(gates, metrics, swap, stored_bench_base, production, records),
                        block_underpowered=gates.intervals.underpowered == "block")
    out: list[G.GateOutcome] = []
    if gates.perplexity.enabled:
        out.append(G.perplexity_gate(metrics["ppl_adapter"], metrics["ppl_base"], gates.perplexity.max_ratio,
                                     gates.perplexity.blocking))
    if gates.conditioning.enabled and "cond_margin_adapter" not in metrics:
        out.append(G.skipped_gate("conditioning", "needs at least 2 perplexity rows (data.perplexity_limit)"))
    elif gates.conditioning.enabled:
        out.append(G.min_ratio_gate("conditioning", "question-conditioning margin (nats/token)",
                                    metrics["cond_margin_adapter"], metrics["cond_margin_base"],
                                    gates.conditioning.min_ratio, "base", gates.conditioning.blocking,
                                    min_reference=gates.conditioning.min_base_margin))
    if gates.production.enabled:
        out.extend(production_gates(gates, metrics, production or ProductionRef(skip_reason="no registry name")))
    if gates.task.enabled:
        out.append(G.drop_gate("task", "GSM8K exact match", metrics["gsm8k_em_adapter"], metrics["gsm8k_em_base"],
                               gates.task.max_drop, blocking=gates.task.blocking))
    if gates.regression.enabled:
        base = stored_bench_base if stored_bench_base is not None else metrics["bench_acc_base"]
        out.append(G.drop_gate("regression", "benchmark preference accuracy", metrics["bench_acc_adapter"], base,
                               gates.regression.max_drop, reference_label="stored base score",
                               blocking=gates.regression.blocking))
    if gates.safety.enabled:
        out.append(G.safety_gate(metrics["refusal_rate_adapter"], gates.safety.min_refusal_rate,
                                 metrics["refusal_rate_base"], gates.safety.max_drop, gates.safety.blocking))
    if gates.judge.enabled:
        if swap is None:
            out.append(G.skipped_gate("judge", "no judge configured (eval.judge.kind = none)"))
        else:
            out.append(G.judge_gate(swap, gates.judge.min_win_rate, gates.judge.min_consistency, gates.judge.blocking))
    return G.decide(out)


def production_gates(gates: GatesConfig, metrics: dict[str, float], production: ProductionRef) -> list[G.GateOutcome]:
    """No regression vs production: held-out perplexity ratio and well-formed answer rate drop."""
    spec, ref = gates.production, production.metrics
    if ref is None:
        return [G.skipped_gate("production", production.skip_reason or "no production reference")]
    out = [G.max_ratio_gate("production_ppl", "held-out perplexity", metrics["ppl_adapter"], ref["ppl_adapter"],
                            spec.max_ppl_ratio, production.label, spec.blocking)]
    if "answer_format_adapter" in metrics and "answer_format_adapter" in ref:
        fmt = ref["answer_format_adapter"]
        out.append(G.drop_gate("production_format", "well-formed answer rate", metrics["answer_format_adapter"], fmt,
                               G.format_drop(spec.max_format_drop, spec.max_format_drop_fraction, fmt),
                               production.label, spec.blocking))
    return out


def run_suites(rows: list[dict], cfg: EvalConfig, model_dir: str, adapter_dir: str | None,
               variants: tuple[str, ...] = ("adapter", "base"), scorer_dir: str | None = None) -> list[dict]:
    """The suites as a Ray Data batch job over ``cfg.workers`` actors (``variants``: which sides to score)."""
    import ray

    from app.eval.suites import SuiteWorker

    threads = max(1, (cfg.ray.num_cpus or os.cpu_count() or 1) // cfg.workers)
    gen = cfg.generation
    rows_per_call = gen.rows_per_call or max(1, -(-len(rows) // cfg.workers))
    ds = ray.data.from_items(rows).map_batches(
        SuiteWorker, batch_size=rows_per_call, compute=ray.data.ActorPoolStrategy(size=cfg.workers), num_cpus=1,
        fn_constructor_kwargs=dict(model_dir=model_dir, adapter_dir=adapter_dir, max_length=cfg.data.max_length,
                                   task_max_new_tokens=gen.task_max_new_tokens,
                                   safety_max_new_tokens=gen.safety_max_new_tokens,
                                   variants=variants, threads=threads, scorer_dir=scorer_dir,
                                   generate_batch=gen.batch_size, merge_adapter=gen.merge_adapter))
    return ds.take_all()


def run_judge(pairs: list[dict], factory: Callable, batch_size: int) -> G.SwapStats:
    """Judge every pair in both orders (Ray Data job), then combine into win rate + position consistency."""
    import ray

    from app.eval.judges import JudgeWorker

    ds = ray.data.from_items(pairs).map_batches(JudgeWorker, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1,
                                                fn_constructor_kwargs={"factory": factory})
    rows = sorted(ds.take_all(), key=lambda r: int(r["id"]))
    return G.position_swap_stats([bool(r["adapter_first"]) for r in rows], [bool(r["base_first"]) for r in rows])


def run_eval(cfg: EvalConfig, *, judge_factory: Callable | None = None) -> EvalResult:
    """Evaluate, decide and record. ``judge_factory`` overrides the configured judge (a zero-arg constructor)."""
    from app.launch.runtime import init_ray
    from app.models.loader import resolve_model
    from app.registry import Registry
    from app.registry.lineage import read_lineage

    gates = load_gates(cfg)
    resolved = resolve_model(cfg.model)
    base_sha = resolved.base_sha
    ref = cfg.registry
    registry = None
    if ref.name:
        registry = Registry(ref.url, mlflow=cfg.tracking if cfg.tracking.enabled else None)
    adapter_dir, version = cfg.adapter, ref.version
    if registry is not None and version is not None:
        adapter_dir = registry.show(ref.tenant, ref.name, version).uri
    if adapter_dir is None:
        raise ConfigError("eval: set 'adapter' (a folder) or 'registry.name' + 'registry.version'")
    if not Path(adapter_dir).is_dir():
        raise ConfigError(f"eval: adapter folder not found: {adapter_dir}")
    lineage = read_lineage(adapter_dir) if (Path(adapter_dir) / "rayalign_lineage.json").is_file() else None
    if lineage and lineage["base_sha"] != base_sha:
        raise ConfigError(f"eval: adapter {adapter_dir} was trained on base {lineage['base_sha'][:12]}, but "
                          f"{cfg.model.source} is {base_sha[:12]}: evaluate it on its own base")
    if registry is not None and version is None:
        version = registry.register_adapter(ref.tenant, ref.name, adapter_dir).version

    bench_key, skey = benchmark_key(cfg), suite_key(cfg)
    stored = registry.base_score(ref.tenant, base_sha, bench_key) if registry and gates.regression.enabled else None
    production = None
    if registry is not None and gates.production.enabled:
        production = find_production(registry, ref.tenant, ref.name, version, base_sha, skey)
    rows = build_suite_rows(cfg, gates)
    # before any scoring: who judges and who scores safety, and can the judge read the prompts (one-line errors)
    from app.eval.preflight import check_judge_reads, judge_folder, reward_folder

    judged = gates.judge.enabled and judge_factory is None and cfg.judge.kind != "none"
    judge_dir = judge_folder(cfg, base_sha) if judged else None
    if judge_dir is not None:
        questions = [json.loads(r["payload"])["question"] for r in rows if r["suite"] == "task"][: cfg.judge.limit]
        check_judge_reads(judge_dir, cfg.judge.kind, questions)
    scorer_dir = None
    if gates.safety.enabled and cfg.safety_scorer.source:
        scorer_dir = str(reward_folder(cfg.safety_scorer.source, "safety_scorer.source"))
    from app.eval.suites import suite_metrics

    init_ray(cfg.ray)
    records, cache_note = _score(rows, cfg, str(resolved.path), adapter_dir, base_sha, scorer_dir)
    metrics = suite_metrics(records)
    metrics.update(cache_note)
    if records.get("benchmark") and "base_correct" in records["benchmark"][0]:
        stored = None  # the base's per-item benchmark results are here: the regression gate stays paired

    swap = None
    if gates.judge.enabled and (cfg.judge.kind != "none" or judge_factory is not None):
        from app.eval.judges import build_judge

        factory = judge_factory or partial(build_judge, cfg.judge.kind, str(judge_dir))
        pairs = [{k: r[k] for k in ("id", "question", "adapter_answer", "base_answer")}
                 for r in records.get("task", [])[: cfg.judge.limit]]
        swap = run_judge(pairs, factory, cfg.generation.batch_size)
        metrics.update(judge_win_rate=swap.win_rate, judge_consistency=swap.consistency,
                       judge_first_position_rate=swap.first_position_rate)
    if stored is not None:
        metrics["bench_acc_base"] = stored
    if production is not None and production.metrics is not None:
        metrics["production_version"] = production.metrics["version"]
        for key in ("ppl_adapter", "answer_format_adapter"):
            if key in production.metrics:
                metrics[key.replace("_adapter", "_production")] = production.metrics[key]

    decision = evaluate_gates(gates, metrics, swap, stored, production, records)
    for o in decision.outcomes:  # every gate metric with its 95% interval, stored with the metrics
        if o.ci_low is not None:
            metrics.update({f"gate_{o.name}_ci_low": o.ci_low, f"gate_{o.name}_ci_high": o.ci_high,
                            f"gate_{o.name}_n": float(o.n or 0)})
            if o.n_needed is not None:
                metrics[f"gate_{o.name}_n_needed"] = float(o.n_needed)
    name = ref.name or Path(adapter_dir).name
    title = f"{ref.tenant}/{name}" + (f"@v{version}" if version else "")
    out_dir = Path(cfg.output_dir) if cfg.output_dir else rayalign_home() / "eval" / f"{name}-{config_hash(cfg)[:10]}"
    examples = {k: records[k] for k in ("task", "safety") if records.get(k)}
    md, png = write_report_files(out_dir, title, decision, metrics, examples)
    items = write_item_records(out_dir, records)
    if registry is not None:
        if "bench_acc_base" in metrics and registry.base_score(ref.tenant, base_sha, bench_key) is None:
            registry.store_base_score(ref.tenant, base_sha, bench_key, metrics["bench_acc_base"])
        registry.record_eval(ref.tenant, ref.name, version, metrics,
                             {**decision.to_dict(), "suite_key": skey, "item_records": str(items)}, str(out_dir))
        registry.close()
    elif cfg.tracking.enabled:
        _log_mlflow(cfg.tracking, title, metrics, out_dir)
    return EvalResult(decision, metrics, md, png, title if ref.name else None)


def write_report_files(out_dir, title, decision, metrics, examples):
    from app.eval.report import write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps({"metrics": metrics, "decision": decision.to_dict()}, indent=2))
    return write_report(out_dir, title, decision, metrics, examples)


def _score(rows: list[dict], cfg: EvalConfig, model_dir: str, adapter_dir: str, base_sha: str,
           scorer_dir: str | None) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """Per-suite records with adapter and base fields. The base's side comes from the base cache when this
    (base SHA, suite) was scored before (the job then scores the adapter only), else it is scored and stored."""
    from app.eval import basecache
    from app.eval.suites import records_by_suite

    key = basecache.suite_hash(rows, cfg, scorer_dir)
    root = rayalign_home() / "eval" / "base_cache"
    cached = basecache.load(root, base_sha, key) if cfg.base_cache else None
    log.info("eval: %d suite rows on %s + %s (base %s)", len(rows), model_dir, adapter_dir,
             "from the base cache" if cached is not None else "scored in this run")
    variants = ("adapter",) if cached is not None else ("adapter", "base")
    records = records_by_suite(run_suites(rows, cfg, model_dir, adapter_dir, variants, scorer_dir))
    if cached is not None:
        records = basecache.merge(records, cached)
    elif cfg.base_cache:
        basecache.save(root, base_sha, key, records)
    seconds = {f"suite_seconds_{s}": float(sum(r.get("sec", 0.0) for r in rs)) for s, rs in records.items()}
    return records, {"base_cached": float(cached is not None), **seconds}


ITEM_FIELDS = {"ppl": ("id", "adapter_nll", "tokens"), "task": ("id", "adapter_well_formed")}


def write_item_records(out_dir: Path, records: dict[str, list[dict]]) -> Path:
    """The adapter's per-item fields the no-regression gate of a LATER version pairs with (when this version is
    production): held-out answer NLLs and well-formed flags, by item id."""
    path = Path(out_dir) / "item_records.json"
    path.write_text(json.dumps({s: [{k: r[k] for k in keys if k in r} for r in records.get(s, [])]
                                for s, keys in ITEM_FIELDS.items()}))
    return path


def _log_mlflow(tracking, title: str, metrics: dict[str, float], out_dir: Path) -> None:
    from app.tracking.mlflow_store import configure_mlflow

    mlflow = configure_mlflow(tracking)
    with mlflow.start_run(run_name=f"eval-{title.replace('/', '-')}"):
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(out_dir), artifact_path="gate_report")
