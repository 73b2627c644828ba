"""The two cost stages of ``benchmarks/eval_gates.py``: ``--stage gencost`` (seconds per GSM8K question of greedy
generation, transformers' ``sdpa`` vs :func:`app.eval.scorer.grouped_query_sdpa`, answers compared) and ``--stage demo``
(README command 1 timed in a fresh RAYALIGN_HOME, with its report's gate sizes). Results go into eval_gates.json."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from app.config.eval import EvalConfig
from app.config.loader import load_config

ROOT = Path(__file__).resolve().parents[1]


def generation_cost(entries: dict, cap: int, n: int) -> dict:
    """Seconds per GSM8K question of greedy generation (no Ray, one process, 2 threads, the gate suite's first
    questions, ``cap`` new tokens), before / after :func:`app.eval.scorer.grouped_query_sdpa`: the good set-A adapter
    merged, 16 questions in one call with transformers' ``sdpa`` (K/V repeated to every query head) and with the
    grouped version (answers compared: must be identical), the same for the base; then the grouped version at
    chunks of 32 and ``n`` (answers of the first 16 compared again); and the NLL of 16 held-out answers both ways."""
    from app.eval.answers import is_well_formed
    from app.eval.heldout import read_qa, resolve_data_path
    from app.eval.scorer import GROUPED_SDPA, AdapterScorer
    from app.models.loader import resolve_model

    cfg = load_config(ROOT / "configs/eval/smollm2_gates.yaml", EvalConfig, ["tracking.enabled=false"])
    qa = read_qa(resolve_data_path(cfg.data.heldout))
    prompts = [[{"role": "user", "content": r["question"]}] for r in qa[:n]]
    s = AdapterScorer(str(resolve_model(cfg.model).path), entries["good"]["adapter"], 384, threads=2)
    out: dict = {"cap": cap, "merged": s.merge(keep_base=True), "threads": 2}
    ref: dict[str, list[str]] = {}

    def use(attn: str) -> None:
        for m in (s.model, s.base_model):
            m.set_attn_implementation(attn)

    def run(name: str, variant: str, ps: list, chunk: int) -> None:
        t = time.time()
        answers = s.generate(ps, cap, variant, chunk)
        dt = time.time() - t
        tokens = [len(s.tok(a, add_special_tokens=False)["input_ids"]) for a in answers]
        row = {"variant": variant, "n": len(ps), "chunk": chunk, "seconds": round(dt, 1), "s_per_q": round(dt / len(ps), 3),
               "answers_hitting_cap": sum(k >= cap - 1 for k in tokens), "well_formed": sum(map(is_well_formed, answers))}
        if variant in ref:
            row["same_answers_as_sdpa"] = f"{sum(a == b for a, b in zip(answers, ref[variant]))}/{len(ref[variant])}"
        else:
            ref[variant] = answers
        out[name] = row
        print(name, json.dumps(row), flush=True)

    use("sdpa")
    run("sdpa_adapter_chunk16", "adapter", prompts[:16], 16)
    run("sdpa_base_chunk16", "base", prompts[:16], 16)
    use(GROUPED_SDPA)
    run("grouped_adapter_chunk16", "adapter", prompts[:16], 16)
    run("grouped_base_chunk16", "base", prompts[:16], 16)
    run("grouped_adapter_chunk32", "adapter", prompts[:32], 32)
    run(f"grouped_adapter_chunk{n}", "adapter", prompts[:n], n)
    held = qa[-16:]
    nll = {}
    for attn in ("sdpa", GROUPED_SDPA):
        use(attn)
        t = time.time()
        nll[attn] = s.sequence_nll([[{"role": "user", "content": r["question"]}] for r in held],
                                   [r["answer"] for r in held], "adapter")
        out[f"nll16_{attn}_seconds"] = round(time.time() - t, 2)
    out["nll16_max_abs_diff"] = max(abs(a[0] - b[0]) for a, b in zip(nll["sdpa"], nll[GROUPED_SDPA]))
    print(json.dumps({k: v for k, v in out.items() if k.startswith("nll")}), flush=True)
    return out


def demo_timing(home: Path, limit_s: int) -> dict:
    """README command 1 timed on 2 cores: ``rayalign pipeline --config configs/pipeline/demo.yaml`` on its embedded
    defaults in a fresh RAYALIGN_HOME (model conversion, ingest, SFT, register, eval with the base scored, promote,
    Serve + one request; nothing cached), the environment already built. Records the wall time, the stage seconds the
    pipeline prints, its verdict, and its report's gate table (n used / n needed per gate: the suites' sizes)."""
    import os
    import re
    import subprocess

    fresh = home / "demo_timing"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    command = ["bash", ".ci/env", "rayalign", "pipeline", "--config", "configs/pipeline/demo.yaml"]
    t0 = time.time()
    try:
        proc = subprocess.run(command, cwd=ROOT, env=dict(os.environ, RAYALIGN_HOME=str(fresh)), capture_output=True,
                              text=True, timeout=limit_s)
    except subprocess.TimeoutExpired as e:  # over the hold's limit: recorded as such, never as a time
        proc = subprocess.CompletedProcess(command, 124, (e.stdout or b"").decode(errors="replace")
                                           if isinstance(e.stdout, bytes) else (e.stdout or ""), f"timed out after {limit_s} s")
    wall = time.time() - t0
    lines = (proc.stdout + "\n" + proc.stderr).splitlines()  # the quiet console's terminal stream is either
    out: dict = {"command": " ".join(command), "home": "fresh (empty RAYALIGN_HOME)", "rc": proc.returncode,
                 "wall_s": round(wall, 1), "budget_s": 900, "within_budget": proc.returncode == 0 and wall <= 900,
                 "summary": [x for x in lines if x.startswith(("pipeline ", "  ", "report: "))][-20:],
                 "stderr_tail": proc.stderr.splitlines()[-5:] if proc.returncode else []}
    out["stage_s"] = {m.group(1): float(m.group(3)) for m in
                      (re.match(r"  (\w+)\s+(ok|skipped|failed|stopped)\s+([\d.]+)s", x) for x in lines) if m}
    report = next((Path(x.split("report: ", 1)[1]) for x in lines if x.startswith("report: ")), None)
    if report and report.is_file():
        text = report.read_text(encoding="utf-8")
        gates = text.split("## Eval gates", 1)[1].split("\n## ", 1)[0] if "## Eval gates" in text else ""
        rows = [[c.strip() for c in x.strip().strip("|").split("|")] for x in gates.splitlines() if x.startswith("|")]
        head = rows[0] if rows else []
        out["report_gates"] = [dict(zip(head, r)) for r in rows[2:]]
        out["report_states_sizes"] = bool(out["report_gates"]) and all(
            g.get("n used") not in (None, "") for g in out["report_gates"] if g.get("result") != "skipped")
    print("demo", json.dumps({k: v for k, v in out.items() if k not in ("summary", "report_gates")}), flush=True)
    return out
