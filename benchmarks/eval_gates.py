"""Must-show: deliberately worse adapters are blocked by the eval gates, a good SFT adapter passes.

All adapters are LoRA SFTs of SmolLM2-135M-Instruct with the platform's own path and the same budget
(configs/sft/smollm2_lora_gsm8k.yaml, train.max_steps=--steps) on the same GSM8K train questions; only the labels differ:
  good       each question -> its real answer
  permuted   each question -> the answer of ANOTHER question (answers permuted across prompts: right format, wrong content)
  scrambled  each question -> its own answer with the words shuffled (labels carry no language)
The training sets go through the real ingest (app.data.pipeline.run_ingest: validate, exact dedup, contamination
check against GSM8K test, tokenize + mask + best-fit pack, dataset artifact), then `run_sft`.

Gating is what a platform does with successive candidates of ONE model name (`gsm8k-sft` in a fresh registry):
`run_eval` (configs/eval/smollm2_gates.yaml, suites shrunk to a 2-core budget below) registers each adapter as the next
version, scores it vs the base, decides and writes the gate report (markdown + PNG); the first version that passes is
promoted to production, and every later candidate is also held to production's stored metrics (no-regression gate).
So `good` goes first. At 12 steps every adapter beats the base on held-out perplexity (they all learn GSM8K's format);
what separates them is the question-conditioning margin (permuted answers teach the model to ignore the question) and
the no-regression comparison with the production version. Prints which gate decided and why; writes
benchmarks/results/eval_gates.json and copies each report to benchmarks/results/eval_gates/<label>/.

    python benchmarks/eval_gates.py                          # train all three (12 steps each), then gate them
    python benchmarks/eval_gates.py --stage eval             # reuse the trained adapters (state file), gates only
    python benchmarks/eval_gates.py --stage train --labels scrambled   # (re)train one; keeps the others' entries
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

# a 2-core CPU budget for the suites (the config's defaults are larger): three gated adapters in ~11 min (estimate). The
# pairwise judge (advisory; the base model as judge is position-biased, consistency 0) is left out here: it costs
# ~40 s per adapter; tests/eval/test_eval_job.py covers its position-swap logic.
EVAL_BUDGET = ["data.perplexity_limit=24", "data.task_limit=8", "generation.task_max_new_tokens=128",
               "data.benchmark_limit=12", "data.redteam_limit=6", "judge.kind=none", "generation.batch_size=8"]
LABELS = ("good", "permuted", "scrambled")
MODEL_NAME = "gsm8k-sft"


def write_sources(work: Path, n: int, seed: int = 0) -> dict[str, Path]:
    """The first ``n`` GSM8K train rows as JSONL, once with real answers and once per deliberately bad labelling."""
    rows = []
    with open(shared_dir() / "data/gsm8k/train.jsonl", encoding="utf-8") as f:
        for line in f:
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
        paths[label] = work / f"gsm8k-train-{n}-{label}.jsonl"
        paths[label].write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return paths


def ingest(label: str, source: Path, out_parent: Path):
    """The platform's ingest on one labelling (near-dup MinHash off: both sets hold the same questions)."""
    from app.data.pipeline import run_ingest

    cfg = load_config(ROOT / "configs/ingest/smollm2_gsm8k_sft.yaml", IngestConfig, [
        f"name=evalgates-{label}", "validation_fraction=0", "dedup.near=false",
        f"sources=[{{path: '{source}', input_format: gsm8k}}]"])
    return run_ingest(cfg, out_dir=out_parent, progress=False)


def gate_all(result: dict, args, home: Path, state_path: Path) -> dict:
    """Gate good, permuted, scrambled in that order as versions of one name; promote the first that passes."""
    from app.eval.runner import run_eval
    from app.registry import Registry

    missing = [label for label in LABELS if label not in result or not Path(result[label]["adapter"]).is_dir()]
    if missing:
        raise SystemExit(f"train these adapters first (--stage train --labels {' '.join(missing)})")
    db = home / "eval_gates_registry.db"
    db.unlink(missing_ok=True)  # a fresh registry: base score and production are established in this run
    result["registry"] = f"sqlite:///{db}"
    out = ROOT / "benchmarks" / "results" / "eval_gates.json"
    t_run = time.time()
    for label in LABELS:
        ecfg = load_config(ROOT / "configs/eval/smollm2_gates.yaml", EvalConfig, [
            f"adapter={result[label]['adapter']}", f"registry.url={result['registry']}", f"registry.name={MODEL_NAME}",
            f"output_dir={home / 'eval_reports' / label}", "tracking.enabled=false", *EVAL_BUDGET])
        t0 = time.time()
        ev = run_eval(ecfg)
        keep = ROOT / "benchmarks" / "results" / "eval_gates" / label
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir(parents=True)
        for f in (ev.report_md, ev.report_png):
            shutil.copyfile(f, keep / Path(f).name)
        promoted = None
        registry = Registry(result["registry"])
        if ev.decision.passed and not registry.list("default", MODEL_NAME, stage="production"):
            promoted = registry.promote("default", MODEL_NAME, int(ev.artifact_ref.rsplit("@v", 1)[1]), "production").ref
        registry.close()
        result[label].update(eval_settings={"budget": EVAL_BUDGET, "stage": args.stage}, artifact_ref=ev.artifact_ref,
                             eval_seconds=round(time.time() - t0, 1), passed=ev.decision.passed,
                             decided_by=ev.decision.decided_by, reason=ev.decision.reason, promoted_to=promoted,
                             metrics=ev.metrics, gates=[o.to_dict() for o in ev.decision.outcomes],
                             report_md=str((keep / Path(ev.report_md).name).relative_to(ROOT)),
                             report_png=str((keep / Path(ev.report_png).name).relative_to(ROOT)))
        print(label, ev.artifact_ref, "PASSED" if ev.decision.passed else f"BLOCKED by {ev.decision.decided_by}:",
              ev.decision.reason, f"({result[label]['eval_seconds']} s)" + (f"; promoted {promoted}" if promoted else ""),
              flush=True)
        result["gate_seconds_total"] = round(time.time() - t_run, 1)
        state_path.write_text(json.dumps(result, indent=2))
        out.write_text(json.dumps(result, indent=2))  # after every label: a cut-short run still shows what it measured
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="SFT optimizer steps per adapter (same for all)")
    ap.add_argument("--n-train", type=int, default=200, help="GSM8K train questions in each training set")
    ap.add_argument("--stage", choices=["all", "train", "eval"], default="all", help="train adapters, gate them, or both")
    ap.add_argument("--labels", nargs="+", choices=LABELS, default=list(LABELS),
                    help="adapters to train (others already trained are kept); gating always runs good first")
    args = ap.parse_args()

    from app.config.common import RaySpec
    from app.launch.runtime import init_ray

    home = rayalign_home()
    state_path = home / "eval_gates_state.json"
    labels = tuple(args.labels)
    # merge, don't overwrite: labels not in this run keep their earlier (trained / measured) entries
    result: dict = json.loads(state_path.read_text()) if state_path.is_file() else {}
    result["settings"] = vars(args)
    init_ray(RaySpec(address="local", num_cpus=2))
    if args.stage in ("all", "train"):
        from app.launch.run import run_sft

        sources = write_sources(home / "eval_gates_data", args.n_train)
        for label in labels:
            t0 = time.time()
            art = ingest(label, sources[label], home / "datasets")
            m = art.manifest
            entry = {"artifact": str(art.path), "artifact_id": art.id, "rows_kept": m["rows_kept"],
                     "contaminated_dropped": m["contaminated_dropped"], "packed_windows": m["packed_windows"],
                     "ingest_seconds": round(time.time() - t0, 1)}
            cfg = load_config(ROOT / "configs/sft/smollm2_lora_gsm8k.yaml", SFTConfig, [
                f"data.artifact={art.path}", f"ray.run_name=evalgates-{label}-{art.id[-8:]}-s{args.steps}",
                "tracking.enabled=false", f"output.dir={home / 'adapters' / ('evalgates-' + label)}",
                f"train.max_steps={args.steps}"])
            t0 = time.time()
            outcome = run_sft(cfg)
            entry |= {"adapter": str(outcome.output_dir), "train_steps": outcome.step, "train_seconds": round(time.time() - t0, 1),
                      "train_loss_first": outcome.history[0]["loss"], "train_loss_last": outcome.history[-1]["loss"]}
            result[label] = entry | {"settings": vars(args)}
            print(label, json.dumps(entry), flush=True)
        state_path.write_text(json.dumps(result, indent=2))
    if args.stage in ("all", "eval"):
        result = gate_all(result, args, home, state_path)
        print(json.dumps({k: {kk: v.get(kk) for kk in ("passed", "decided_by", "reason")} for k, v in result.items()
                          if isinstance(v, dict) and "passed" in v}, indent=2))
    import ray

    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
