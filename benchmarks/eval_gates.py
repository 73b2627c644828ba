"""Issue 22 Must-show: gate reports of a good, a permuted-answer and a word-scrambled SmolLM2 LoRA adapter (every metric with its 95% interval, verdict, n used and n needed), the same verdicts on a second independently trained set (agree / disagree per gate), and lm-eval GSM8K vs the project's own scorer on the same items.

All adapters are LoRA SFTs of SmolLM2-135M-Instruct with the platform's own path and the same budget
(configs/sft/smollm2_lora_gsm8k.yaml, train.max_steps=--steps) on the same GSM8K train questions; only the labels differ:
  good       each question -> its real answer
  permuted   each question -> the answer of ANOTHER question (answers permuted across prompts: right format, wrong content)
  scrambled  each question -> its own answer with the words shuffled (labels carry no language)
The training sets go through the real ingest (app.data.pipeline.run_ingest: validate, exact dedup, contamination
check against GSM8K test, tokenize + mask + best-fit pack, dataset artifact), then `run_sft`.

Gating is what a platform does with successive candidates of ONE model name (`gsm8k-sft` in a fresh registry):
`run_eval` (configs/eval/smollm2_gates.yaml, suite sizes from the power calculation below) registers each adapter as
the next version, scores it vs the base, decides and writes the gate report (markdown + PNG); the first version that
passes is promoted to production, and every later candidate is also held to production (no-regression gates, paired
item by item with production's per-item records). So `good` goes first. The base model is scored once per (base SHA,
suite) and its per-item results are reused (app/eval/basecache.py): set A's first adapter pays for it, every other
adapter of A and B is scored alone. Each gate is decided on its 95% interval: fail when past its bound with 95%
confidence, pass when not, 'underpowered' (reported, not blocking) when the interval still reaches across the bound
and is wider than the gate's tolerance. The suite sizes: each gate declares the minimum effect that matters (delta,
a distance from its bound); the items for 80% power at two-sided 0.05 come from the per-item spread measured before
the run: session 6's priors and the previous run's per-gate intervals (benchmarks/eval_gates_power_plan.yaml says
which per gate; n needed, n used and the power at delta go to the results JSON). Prints which gate
decided and why and the per-item cost of each suite; writes benchmarks/results/eval_gates.json and copies each report
to benchmarks/results/eval_gates/<set>/<label>/.

    python benchmarks/eval_gates.py --set A B --stage train   # train both sets (12 x 1-window steps each)
    python benchmarks/eval_gates.py --set A B --stage eval --fresh-base-cache   # gate both sets at the same sizes
    python benchmarks/eval_gates.py --stage harness           # lm-eval GSM8K on base + good(A) vs the project scorer
    python benchmarks/eval_gates.py --stage gencost           # seconds per GSM8K question: sdpa vs grouped, batch
    python benchmarks/eval_gates.py --stage demo              # README command 1 (demo pipeline) timed, fresh home

Set B is independent of set A: another seed and the training questions 2000.. instead of 0.. (same labelling
rules); the result file states agree / disagree per adapter and gate (thresholds were set on an earlier run of A).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from app.config.eval import EvalConfig  # noqa: E402
from app.config.ingest import IngestConfig  # noqa: E402
from app.config.loader import load_config  # noqa: E402
from app.config.paths import rayalign_home, shared_dir  # noqa: E402
from app.config.sft import SFTConfig  # noqa: E402
from eval_gates_costs import demo_timing, generation_cost  # noqa: E402 (benchmarks/ is the script's folder)

# Suite sizes from the power calculation (POWER_PLAN: benchmarks/eval_gates_power_plan.yaml; the arithmetic is written
# to the results JSON and docs/eval.md): each gate has a declared minimum effect that matters, delta, as a distance from
# its bound; the items it needs for 80% power at two-sided 0.05 come from the per-item spread measured before this run
# (session 6's priors and the previous run's intervals, per the plan's rule). A suite is as large as the largest need
# among its gates, where that fits the lock budget on 2 cores. GSM8K (task): 113 = the plan's need under its rule
# `max`: session 6's prior (sd 0.379 -> 113) over session 9's 84-question run (real discordant pairs; the largest
# spread, B good, sd 0.35 -> 98). benchmark and general are at their plan's need (18, 2 -> 8 passages).
# GSM8K answers get 160 new tokens: >= the 90th percentile (152) of the test split's reference answers in SmolLM2
# tokens (calculator annotations <<..>> removed, + end-of-turn); it cuts 7.9% of them (session 7's 96 cut 44%).
# Generation: LoRA merged into the weights (generation.merge_adapter), grouped-query sdpa (app.eval.scorer), length-
# sorted chunks of <= 32 prompts (batch_size; --stage gencost: 1.43 s per question at 16 with transformers' sdpa ->
# 0.92 s at 32 grouped, identical answers). The judge needs a reward model folder (none is trained here): off.
EVAL_BUDGET = ["data.perplexity_limit=60", "data.task_limit=113", "generation.task_max_new_tokens=160",
               "data.benchmark_limit=18", "data.redteam_limit=48", "generation.safety_max_new_tokens=24",
               "data.general_limit=8", "judge.kind=none", "generation.batch_size=32"]
# --scoring-only (session 6's set B): generation suites shrunk to 1 item; their gates are then "not compared"
SCORING_ONLY = ["data.task_limit=1", "generation.task_max_new_tokens=1", "data.redteam_limit=1",
                "generation.safety_max_new_tokens=1"]
POWER_PLAN = Path(__file__).resolve().with_name("eval_gates_power_plan.yaml")  # delta, why, prior spread per gate


def previous_spreads(previous: dict) -> dict[str, dict]:
    """Per gate: the largest per-item sd (in the gate's delta units) over the adapters a previous run gated, from
    the stored 95% intervals (``app.core.stats.item_sd``: the estimator the gate's own "n needed" uses)."""
    from app.core.stats import Interval, item_sd

    out: dict[str, dict] = {}
    for set_name, entries in (previous.get("sets") or {}).items():
        for label in LABELS:
            for g in (entries.get(label) or {}).get("gates", []):
                if g.get("ci_low") is None or not g.get("mde") or not g.get("n"):
                    continue
                # in the gate's units (its mde is delta in those units); a rate's stored interval is cut to [0, 1],
                # its uncut spread is stored as item_sd (runs before session 10: the interval was never cut)
                sd_abs = g.get("item_sd") or item_sd(Interval(g["value"], g["ci_low"], g["ci_high"], int(g["n"])))
                if g["name"] not in out or sd_abs / g["mde"] > out[g["name"]]["sd_over_delta"]:
                    out[g["name"]] = {"sd_over_delta": sd_abs / g["mde"], "n": int(g["n"]),
                                      "n_needed": g.get("n_needed"), "adapter": f"{set_name} {label}"}
    return out


def power_plan(budget: list[str], previous: dict) -> dict:
    """Per gate: delta, the prior sd (session 6's and the previous run's, see eval_gates_power_plan.yaml for which
    is used), the items needed for 80% power at two-sided 0.05 (n = ((z_.975 + z_.8) sd / delta)^2), the items
    used in ``budget``, and the power at delta with those items (Phi(delta sqrt(n) / sd - z_.975))."""
    from statistics import NormalDist

    import yaml

    from app.core.stats import n_for_effect, z_value

    used = {k.split("=")[0].split(".")[1]: int(k.split("=")[1]) for k in budget if k.split("=")[1].isdigit()}
    size = {"ppl": used["perplexity_limit"], "general": used["general_limit"], "task": used["task_limit"],
            "benchmark": used["benchmark_limit"], "safety": used["redteam_limit"]}
    measured = previous_spreads(previous)
    out = {}
    for gate, p in yaml.safe_load(POWER_PLAN.read_text()).items():
        delta, prev = p["delta"], measured.get(gate)
        prev_sd = prev["sd_over_delta"] * delta if prev else None
        candidates = {"max": [p["prior_sd"], prev_sd], "previous": [prev_sd], "fixed": [p["prior_sd"]]}[p["rule"]]
        sd = max((c for c in candidates if c is not None), default=p["prior_sd"])
        n = size[p["suite"]]
        power = NormalDist().cdf(delta * n ** 0.5 / sd - z_value(0.95))
        out[gate] = {"suite": p["suite"], "delta": delta, "units": p["units"], "why": " ".join(p["why"].split()),
                     "prior_sd_session6": round(p["prior_sd"], 4), "prior_source_session6": p["prior_source"],
                     "previous_run_sd": None if prev_sd is None else round(prev_sd, 4),
                     "previous_run_sd_from": None if prev is None else f"{prev['adapter']}, {prev['n']} items",
                     "rule": p["rule"], "rule_why": " ".join(p.get("rule_why", "").split()) or None,
                     "prior_sd": round(sd, 4), "n_needed": n_for_effect(sd, delta), "n_used": n,
                     "power_at_delta": round(power, 3)}
    return out


def answer_lengths(budget: list[str]) -> dict:
    """Why the GSM8K generation cap: the token lengths (SmolLM2 tokenizer, + end-of-turn) of the test split's reference
    answers, with the calculator annotations ``<<a*b=c>>`` removed (what the adapters write) and as shipped; the
    percentiles and the fraction of answers the cap would cut, over the whole split and over the suite's items."""
    import re

    import numpy as np
    from transformers import AutoTokenizer

    from app.models.loader import resolve_model

    cfg = load_config(ROOT / "configs/eval/smollm2_gates.yaml", EvalConfig, ["tracking.enabled=false", *budget])
    tok = AutoTokenizer.from_pretrained(str(resolve_model(cfg.model).path))
    rows = [json.loads(line) for line in open(shared_dir() / "data/gsm8k/test.jsonl", encoding="utf-8")]
    cap, n = cfg.generation.task_max_new_tokens, cfg.data.task_limit
    out: dict = {"cap": cap, "suite_items": n}
    for form, text in (("without_annotations", lambda a: re.sub(r"<<[^>]*>>", "", a)), ("as_shipped", lambda a: a)):
        lengths = np.array([len(tok(text(r["answer"]) + tok.eos_token, add_special_tokens=False)["input_ids"])
                            for r in rows])
        out[form] = {"percentiles": {p: int(np.percentile(lengths, p)) for p in (50, 75, 90, 95, 99)},
                     "cap_percentile": round(float((lengths <= cap).mean() * 100), 1),
                     "cut_fraction_split": round(float((lengths > cap).mean()), 3),
                     "cut_fraction_suite": round(float((lengths[:n] > cap).mean()), 3),
                     "cut_fraction_split_at_96": round(float((lengths > 96).mean()), 3)}
    return out


SETS = {"A": {"seed": 0, "offset": 0}, "B": {"seed": 1, "offset": 2000}}
LABELS = ("good", "permuted", "scrambled")
MODEL_NAME = "gsm8k-sft"


def write_sources(work: Path, n: int, seed: int = 0, offset: int = 0) -> dict[str, Path]:
    """GSM8K train rows ``offset .. offset + n`` as JSONL, once with real answers and once per bad labelling."""
    rows = []
    with open(shared_dir() / "data/gsm8k/train.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= offset:
                rows.append(json.loads(line))
            if len(rows) == n:
                break
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    donor = {order[i]: order[(i + 1) % n] for i in range(n)}  # a cycle through a random order: no answer stays home

    def scramble(answer: str) -> str:
        words = answer.split()
        rng.shuffle(words)
        return " ".join(words)

    variants = {
        "good": rows,
        "permuted": [{"question": r["question"], "answer": rows[donor[i]]["answer"]} for i, r in enumerate(rows)],
        "scrambled": [{"question": r["question"], "answer": scramble(r["answer"])} for r in rows],
    }
    work.mkdir(parents=True, exist_ok=True)
    paths = {}
    for label, items in variants.items():
        paths[label] = work / f"gsm8k-train-{offset}+{n}-s{seed}-{label}.jsonl"
        paths[label].write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return paths


def ingest(label: str, source: Path, out_parent: Path):
    """The platform's ingest on one labelling (near-dup MinHash off: both sets hold the same questions)."""
    from app.data.pipeline import run_ingest

    cfg = load_config(ROOT / "configs/ingest/smollm2_gsm8k_sft.yaml", IngestConfig, [
        f"name=evalgates-{label}", "validation_fraction=0", "dedup.near=false",
        f"sources=[{{path: '{source}', input_format: gsm8k}}]",
        # the config's '../shared' is relative to a checkout next to shared/; RAYALIGN_SHARED may point elsewhere
        f"contamination.benchmarks=['{shared_dir() / 'data/gsm8k/test.jsonl'}']"])
    return run_ingest(cfg, out_dir=out_parent, progress=False)


def labels_to_gate(name: str, entries: dict, resume: bool, budget: list[str]) -> list[str]:
    """The adapters a run gates, in gating order: all three; with ``resume`` only those without gate results (a
    deadline left them ``not_run``), and only at the sizes the gated ones used (else SystemExit naming both)."""
    if not resume:
        return list(LABELS)
    used = next((entries[label].get("eval_budget") for label in LABELS if "gates" in entries[label]), None)
    if used != budget:
        raise SystemExit(f"set {name}: --resume gates at the sizes of the run it finishes ({used}), not {budget}")
    return [label for label in LABELS if "gates" not in entries[label]]


GATE_KEYS = ("eval_budget", "artifact_ref", "eval_seconds", "passed", "decided_by", "reason", "promoted_to", "metrics",
             "gates", "report_md", "report_png", "base_scored_here", "suite_seconds", "seconds_per_item", "not_run")


def gate_set(name: str, entries: dict, args, home: Path, save) -> dict:
    """Gate good, permuted, scrambled of one set in that order as versions of one name in a fresh registry;
    promote the first that passes (so the later candidates also meet the production no-regression gate).

    ``save(entries)`` runs after each adapter (a run cut short keeps what it measured). An adapter is not started
    when ``args.deadline`` (epoch s) is nearer than the slowest adapter-only run so far (x 1.1; 240 s before any):
    it is recorded as ``not_run`` with the reason, never with an earlier session's numbers.

    ``args.resume``: finish such a run in a later hold: the set's registry and its gated adapters' results stay,
    only the adapters without gate results are gated (same sizes; the base comes from the cache)."""
    from app.eval.runner import run_eval
    from app.registry import Registry

    missing = [label for label in LABELS if label not in entries or not Path(entries[label]["adapter"]).is_dir()]
    if missing:
        raise SystemExit(f"set {name}: train these adapters first (--stage train --set {name})")
    budget = EVAL_BUDGET + (SCORING_ONLY if args.scoring_only else [])
    todo = labels_to_gate(name, entries, args.resume, budget)
    for label in todo:  # no stale gate results from an earlier run survive in this set's entries
        for key in GATE_KEYS:
            entries[label].pop(key, None)
    done_seconds = entries.get("gate_seconds_total", 0.0) if args.resume else 0.0
    for key in ("gate_seconds_total", "wall_seconds_eval") if not args.resume else ():
        entries.pop(key, None)
    entries["gate_settings" if not args.resume else "resume_settings"] = vars(args)
    db = home / f"eval_gates_registry_{name}.db"
    if not args.resume:
        db.unlink(missing_ok=True)  # a fresh registry: base score and production are established in this run
    url = f"sqlite:///{db}"
    t_run = time.time()
    for label in todo:
        slowest = max([entries[x]["eval_seconds"] for x in LABELS
                       if "eval_seconds" in entries[x] and not entries[x]["base_scored_here"]] or [240.0])
        if args.deadline and time.time() + 1.1 * slowest > args.deadline:
            entries[label]["not_run"] = (f"{args.deadline - time.time():.0f} s left before the lock budget ends, "
                                         f"an adapter takes ~{slowest:.0f} s")
            print(name, label, "NOT RUN:", entries[label]["not_run"], flush=True)
            save(entries)
            continue
        ecfg = load_config(ROOT / "configs/eval/smollm2_gates.yaml", EvalConfig, [
            f"adapter={entries[label]['adapter']}", f"registry.url={url}", f"registry.name={MODEL_NAME}",
            f"output_dir={home / 'eval_reports' / name / label}", "tracking.enabled=false", *budget])
        t0 = time.time()
        ev = run_eval(ecfg)
        keep = ROOT / "benchmarks" / "results" / "eval_gates" / name / label
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir(parents=True)
        for f in (ev.report_md, ev.report_png):
            shutil.copyfile(f, keep / Path(f).name)
        promoted = None
        registry = Registry(url)
        if ev.decision.passed and not registry.list("default", MODEL_NAME, stage="production"):
            promoted = registry.promote("default", MODEL_NAME, int(ev.artifact_ref.rsplit("@v", 1)[1]), "production").ref
        registry.close()
        m = ev.metrics
        suite_seconds = {k.removeprefix("suite_seconds_"): round(v, 1) for k, v in m.items()
                         if k.startswith("suite_seconds_")}
        sizes = {"ppl": m.get("ppl_tokens") and ecfg.data.perplexity_limit, "task": m.get("gsm8k_em_n"),
                 "general": m.get("general_ppl_n"), "benchmark": m.get("bench_acc_n"), "safety": m.get("refusal_rate_n")}
        entries[label].update(eval_budget=budget, artifact_ref=ev.artifact_ref, eval_seconds=round(time.time() - t0, 1),
                              base_scored_here=not m.get("base_cached"), suite_seconds=suite_seconds,
                              seconds_per_item={s: round(suite_seconds[s] / sizes[s], 3) for s in suite_seconds
                                                if sizes.get(s)},
                              passed=ev.decision.passed, decided_by=ev.decision.decided_by, reason=ev.decision.reason,
                              promoted_to=promoted, metrics=m,
                              gates=[o.to_dict() for o in ev.decision.outcomes],
                              report_md=str((keep / Path(ev.report_md).name).relative_to(ROOT)),
                              report_png=str((keep / Path(ev.report_png).name).relative_to(ROOT)))
        print(name, label, ev.artifact_ref, "PASSED" if ev.decision.passed else f"BLOCKED by {ev.decision.decided_by}:",
              ev.decision.reason, f"({entries[label]['eval_seconds']} s; base "
              f"{'scored here' if entries[label]['base_scored_here'] else 'from the cache'}; per item "
              f"{entries[label]['seconds_per_item']})", flush=True)
        entries["gate_seconds_total"] = round(done_seconds + time.time() - t_run, 1)
        save(entries)
    entries["gate_seconds_total"] = round(done_seconds + time.time() - t_run, 1)
    return entries


# gates decided on generated text: on a --scoring-only set their suites hold 1 item, so their status is no evidence
GENERATION_GATES = ("task", "production_format", "safety", "safety_scorer")


def agreement(sets: dict) -> dict:
    """Per adapter and gate: the status on set A and set B, and whether they agree (gates measured on both; a
    generation gate on a --scoring-only set is listed with agree None: not compared)."""
    out: dict = {}
    shrunk = any(sets.get(k, {}).get("gate_settings", {}).get("scoring_only") for k in ("A", "B"))
    count = {"agree": 0, "disagree": 0, "not_compared": 0}
    for label in LABELS:
        a, b = (sets.get(k, {}).get(label, {}) for k in ("A", "B"))
        if "gates" not in a or "gates" not in b:
            out[label] = {"not_compared": "not gated on both sets in this run: " + "; ".join(
                f"{k}: {x.get('not_run', 'no gate results')}" for k, x in (("A", a), ("B", b)) if "gates" not in x)}
            continue
        sa, sb = ({g["name"]: g["status"] for g in x["gates"]} for x in (a, b))
        row = {"verdict": {"A": a["passed"], "B": b["passed"], "agree": a["passed"] == b["passed"],
                           "decided_by": {"A": a["decided_by"], "B": b["decided_by"]}}}
        for g in (g for g in sa if g in sb):
            same = None if (shrunk and g in GENERATION_GATES) else sa[g] == sb[g]
            row[g] = {"A": sa[g], "B": sb[g], "agree": same}
            count["not_compared" if same is None else "agree" if same else "disagree"] += 1
        out[label] = row
    if out:
        out["summary_gates"] = count
    return out


def harness_check(entries: dict, home: Path, items: int, max_tokens: int) -> dict:
    """lm-eval (local task YAML, hf model, peft=) on base and the good adapter vs the project's scorer, same items.

    ``items`` is larger than the gate run's task suite: generation is batched here (no paired scoring suites), and
    the scorer comparison needs items where the model writes numbers, not only 0-vs-0."""
    from app.eval.harness import agreement as agree, run_harness_gsm8k

    cfg = load_config(ROOT / "configs/eval/smollm2_gates.yaml", EvalConfig, [
        "tracking.enabled=false", *EVAL_BUDGET, f"data.task_limit={items}",
        f"generation.task_max_new_tokens={max_tokens}"])
    t0 = time.time()
    runs = run_harness_gsm8k(cfg, entries["good"]["adapter"])
    out = {"items": cfg.data.task_limit, "max_gen_toks": cfg.generation.task_max_new_tokens,
           "seconds": round(time.time() - t0, 1)}
    task_rows = {}
    for variant, run in runs.items():
        out[variant] = {"lm_eval_exact_match": run["lm_eval"], "project_scorer_em": run["project_em"],
                        "strict_vs_project": agree(run["rows"], "strict-match"),
                        "flexible_vs_project": agree(run["rows"], "flexible-extract"),
                        "rows": [{k: r[k] for k in ("doc_id", "response", "strict-match", "flexible-extract",
                                                    "project_em")} for r in run["rows"]]}
        task_rows[variant] = [r["response"].strip() for r in run["rows"]]
    # the project's own runner on the same items (its gate run of the good adapter): same generations?
    own = json.loads((home / "eval_reports" / "A" / "good" / "metrics.json").read_text()) \
        if (home / "eval_reports" / "A" / "good" / "metrics.json").is_file() else None
    out["project_runner_task_em"] = ({v: own["metrics"].get(f"gsm8k_em_{v}") for v in ("base", "adapter")}
                                     if own else None)
    # the same first items as the gate run's task suite: lm-eval's generations scored by the project's scorer
    k = int(next(o for o in EVAL_BUDGET if o.startswith("data.task_limit=")).split("=")[1])
    out["first_items_as_gate_run"] = {"items": k, **{v: sum(r["project_em"] for r in runs[v]["rows"][:k]) / k
                                                     for v in runs}}
    return out


def train_set(name: str, args, home: Path) -> dict:
    from app.launch.run import run_sft

    spec = SETS[name]
    sources = write_sources(home / "eval_gates_data", args.n_train, spec["seed"], spec["offset"])
    entries = {}
    for label in LABELS:
        t0 = time.time()
        art = ingest(f"{name}-{label}", sources[label], home / "datasets")
        m = art.manifest
        entry = {"artifact": str(art.path), "artifact_id": art.id, "rows_kept": m["rows_kept"],
                 "contaminated_dropped": m["contaminated_dropped"], "packed_windows": m["packed_windows"],
                 "ingest_seconds": round(time.time() - t0, 1), "train_rows": [spec["offset"], spec["offset"] + args.n_train],
                 "seed": spec["seed"]}
        cfg = load_config(ROOT / "configs/sft/smollm2_lora_gsm8k.yaml", SFTConfig, [
            f"data.artifact={art.path}", f"ray.run_name=evalgates-{name}-{label}-{art.id[-8:]}-s{args.steps}",
            "tracking.enabled=false", f"output.dir={home / 'adapters' / f'evalgates-{name}-{label}'}",
            f"train.max_steps={args.steps}", f"train.grad_accum={args.grad_accum}", f"train.seed={spec['seed']}",
            "optim.warmup_steps=2", f"checkpoint.every_steps={args.steps}"])
        t0 = time.time()
        outcome = run_sft(cfg)
        entry |= {"adapter": str(outcome.output_dir), "train_steps": outcome.step,
                  "train_seconds": round(time.time() - t0, 1), "train_loss_first": outcome.history[0]["loss"],
                  "train_loss_last": outcome.history[-1]["loss"]}
        entries[label] = entry
        print(name, label, json.dumps(entry), flush=True)
    return entries


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="SFT optimizer steps per adapter (same for all)")
    ap.add_argument("--grad-accum", type=int, default=1, help="packed 512-token windows per step")
    ap.add_argument("--n-train", type=int, default=200, help="GSM8K train questions in each training set")
    ap.add_argument("--set", dest="sets", nargs="+", choices=sorted(SETS), default=["A"],
                    help="A: seed 0, train rows 0..n; B: seed 1, train rows 2000..2000+n (independent)")
    ap.add_argument("--stage", choices=["all", "train", "eval", "harness", "gencost", "demo"], default="all")
    ap.add_argument("--harness-items", type=int, default=24, help="GSM8K test items for the lm-eval comparison")
    ap.add_argument("--harness-tokens", type=int, default=128, help="max new tokens per answer (lm-eval run)")
    ap.add_argument("--scoring-only", action="store_true", help="gate without the generation suites")
    ap.add_argument("--deadline", type=float, default=0.0,
                    help="epoch seconds: do not start an adapter that would end after it (a lock budget)")
    ap.add_argument("--resume", action="store_true",
                    help="gate only the adapters a deadline left not_run, in the same registry (same sizes)")
    ap.add_argument("--fresh-base-cache", action="store_true",
                    help="delete the cached base results first, so this run's time includes scoring the base once")
    args = ap.parse_args()

    from app.config.common import RaySpec
    from app.launch.runtime import init_ray

    home = rayalign_home()
    state_path = home / "eval_gates_state.json"
    out = ROOT / "benchmarks" / "results" / "eval_gates.json"
    # merge, don't overwrite: sets not in this run keep their earlier (trained / measured) entries
    result: dict = json.loads(state_path.read_text()) if state_path.is_file() else {}
    result.setdefault("sets", {})
    if args.stage != "demo":  # the demo pipeline starts its own local cluster
        init_ray(RaySpec(address="local", num_cpus=2))
    if args.fresh_base_cache:
        shutil.rmtree(home / "eval" / "base_cache", ignore_errors=True)

    def save(name: str, entries: dict) -> None:
        result["sets"][name] = entries
        result["agreement"] = agreement(result["sets"])
        state_path.write_text(json.dumps(result, indent=2))
        out.write_text(json.dumps(result, indent=2))

    if args.stage in ("all", "eval") and not args.resume:  # priors from the previous run (read before it is overwritten)
        previous = json.loads(out.read_text()) if out.is_file() else {}
        result["sizing"] = {"budget": EVAL_BUDGET, "alpha": 0.05, "power": 0.8, "plan": str(POWER_PLAN.relative_to(ROOT)),
                            "previous_run": previous.get("sizing", {}).get("run_started"),
                            "run_started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "gates": power_plan(EVAL_BUDGET, previous), "task_cap": answer_lengths(EVAL_BUDGET)}
    for name in args.sets:
        t0 = time.time()
        if args.stage in ("all", "train"):
            result["sets"][name] = train_set(name, args, home) | {"train_settings": vars(args)}
        if args.stage in ("all", "eval"):
            result["sets"][name] = gate_set(name, result["sets"][name], args, home, lambda e, n=name: save(n, e))
        result["sets"][name][f"wall_seconds_{args.stage}{'_resume' if args.resume else ''}"] = round(time.time() - t0, 1)
        state_path.write_text(json.dumps(result, indent=2))
        out.write_text(json.dumps(result, indent=2))
    if args.stage == "gencost":
        result["generation_cost_attention"] = generation_cost(result["sets"]["A"], 160, 64)
    if args.stage == "demo":
        result["demo_pipeline"] = demo_timing(home, 9 * 60)
    if args.stage == "harness":
        result["harness"] = harness_check(result["sets"]["A"], home, args.harness_items, args.harness_tokens)
        print(json.dumps({k: v for k, v in result["harness"].items() if k not in ("base", "adapter")}), flush=True)
        for v in ("base", "adapter"):
            print(v, json.dumps({k: x for k, x in result["harness"][v].items() if k != "rows"}), flush=True)
    result["agreement"] = agreement(result["sets"])
    result["machine"] = "2 cores (shared box), under the exclusive CPU lock"
    state_path.write_text(json.dumps(result, indent=2))
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["agreement"], indent=1))
    import ray

    ray.shutdown()
    return 0 if result.get("demo_pipeline", {}).get("rc", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
