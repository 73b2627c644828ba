"""Must-show: a deliberately worse adapter is blocked by the eval gates, a good SFT adapter passes.

Both adapters are trained with the platform's SFT (app.train.run.run_sft, configs/sft/smollm2_lora_gsm8k.yaml) on
SmolLM2-135M-Instruct with the same budget and data size; the only difference is the labels:
  good      GSM8K train question -> its real answer
  shuffled  GSM8K train question -> its answer with the answer tokens randomly shuffled (labels carry no language)
Then `run_eval` (configs/eval/smollm2_gates.yaml) scores each against the base, registers it, decides, and writes
the gate report (markdown + PNG). Prints which gate decided and writes benchmarks/results/eval_gates.json.

    python benchmarks/eval_gates.py [train.max_steps=30]
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config.eval import EvalConfig  # noqa: E402
from app.config.loader import load_config  # noqa: E402
from app.config.paths import rayalign_home, shared_dir  # noqa: E402
from app.config.sft import SFTConfig  # noqa: E402
from app.models.loader import load_tokenizer, resolve_model  # noqa: E402

N_TRAIN, MAX_LEN = 600, 512
# a 2-core CPU budget for the suites (the config's defaults are larger)
EVAL_BUDGET = ["data.task_limit=8", "generation.task_max_new_tokens=96", "data.benchmark_limit=24",
               "data.redteam_limit=8", "judge.limit=8", "generation.batch_size=8"]
_spec = importlib.util.spec_from_file_location("sft_gsm8k", ROOT / "benchmarks" / "sft_gsm8k.py")
sft_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sft_bench)


def write_artifact(out: Path, tok, shuffle_labels: bool) -> Path:
    """Packed SFT artifact (data contract columns); with ``shuffle_labels`` the answer tokens are permuted per example."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (out / "manifest.json").is_file():
        return out
    rng = random.Random(0)
    rows, cur = [], {"input_ids": [], "labels": [], "position_ids": []}
    for r in sft_bench.read_jsonl(shared_dir() / "data/gsm8k/train.jsonl", N_TRAIN):
        ids, labels = sft_bench.encode(tok, r["question"], r["answer"])
        if shuffle_labels:
            start = next(i for i, l in enumerate(labels) if l != -100)
            answer = ids[start:-1]  # keep the final end-of-turn token in place
            rng.shuffle(answer)
            ids = ids[:start] + answer + ids[-1:]
            labels = labels[:start] + answer + labels[-1:]
        ids, labels = ids[:MAX_LEN], labels[:MAX_LEN]
        if len(cur["input_ids"]) + len(ids) > MAX_LEN:
            rows.append(cur)
            cur = {"input_ids": [], "labels": [], "position_ids": []}
        cur["input_ids"] += ids
        cur["labels"] += labels
        cur["position_ids"] += list(range(len(ids)))
    rows.append(cur)
    (out / "train").mkdir(parents=True, exist_ok=True)
    table = pa.table({k: pa.array([r[k] for r in rows], type=pa.list_(pa.int32()))
                      for k in ("input_ids", "labels", "position_ids")})
    table = table.append_column("seq_len", pa.array([len(r["input_ids"]) for r in rows], type=pa.int32()))
    pq.write_table(table, out / "train" / "part-00000.parquet")
    tokens = sum(len(r["input_ids"]) for r in rows)
    kind = "shuffled" if shuffle_labels else "real"
    (out / "manifest.json").write_text(json.dumps({
        "id": f"gsm8k-{kind}-{N_TRAIN}-{MAX_LEN}", "record_type": "sft", "max_length": MAX_LEN,
        "splits": {"train": len(rows)}, "tokens": tokens}))
    return out


def main(overrides: list[str]) -> None:
    from app.eval.runner import run_eval
    from app.train.run import run_sft

    resolved = resolve_model("bundled:smollm2-135m-instruct")
    tok = load_tokenizer(resolved)
    home = rayalign_home()
    url = f"sqlite:///{home / 'eval_gates_registry.db'}"
    result: dict = {"registry": url}
    for label, shuffle in (("good", False), ("shuffled", True)):
        artifact = write_artifact(home / "datasets" / f"gsm8k-{label}-{N_TRAIN}", tok, shuffle)
        cfg = load_config(ROOT / "configs/sft/smollm2_lora_gsm8k.yaml", SFTConfig,
                          [f"data.artifact={artifact}", f"ray.run_name=evalgates-{label}", "tracking.enabled=false",
                           f"output.dir={home / 'adapters' / label}", *overrides])
        t0 = time.time()
        outcome = run_sft(cfg)
        result[label] = {"adapter": str(outcome.output_dir), "train_steps": outcome.step,
                         "train_seconds": round(time.time() - t0, 1),
                         "train_loss_first": outcome.history[0]["loss"], "train_loss_last": outcome.history[-1]["loss"]}
        print(label, json.dumps(result[label]), flush=True)
    for label in ("good", "shuffled"):
        ecfg = load_config(ROOT / "configs/eval/smollm2_gates.yaml", EvalConfig,
                           [f"adapter={result[label]['adapter']}", f"registry.url={url}", f"registry.name=gsm8k-{label}",
                            f"output_dir={home / 'eval_reports' / label}", "tracking.enabled=false", *EVAL_BUDGET])
        t0 = time.time()
        ev = run_eval(ecfg)
        result[label].update(eval_seconds=round(time.time() - t0, 1), passed=ev.decision.passed,
                             decided_by=ev.decision.decided_by, reason=ev.decision.reason, metrics=ev.metrics,
                             report_md=str(ev.report_md), report_png=str(ev.report_png),
                             gates=[o.to_dict() for o in ev.decision.outcomes])
        print(label, "PASSED" if ev.decision.passed else f"BLOCKED by {ev.decision.decided_by}", ev.decision.reason,
              flush=True)
    out = ROOT / "benchmarks" / "results" / "eval_gates.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
