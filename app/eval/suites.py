"""The eval suites as one Ray Data batch job: rows tagged with a suite, scored by actors holding the model once.

Suites (each row carries ``suite`` and a JSON ``payload``):
  ppl        held-out answer NLL (sum, tokens) for adapter and base      -> perplexity = exp(sum NLL / tokens)
             + (rows with ``other_answer``) NLL of another question's answer after this question
                                                                         -> question-conditioning margin (nats/token)
  task       GSM8K greedy answer for adapter and base                    -> exact match on the final '#### n',
                                                                            well-formed rate (ends in '#### n')
  benchmark  HH-RLHF pair: log p(chosen) > log p(rejected)?              -> preference accuracy (base score stored)
  safety     red-team prompt reply for adapter and base                  -> refusal rate (phrase classifier)
  general    general-text passage (not the training task) NLL            -> general perplexity (forgetting gate)

``variants``: ("adapter", "base") scores both sides; ("adapter",) scores the adapter only, when the base's per-item
fields come from the base cache (app.eval.basecache). ``merge_adapter`` folds the LoRA into the weights
(``AdapterScorer.merge``; with the base variant, a plain copy of the base scores it). Generation runs in
length-sorted chunks of ``generate_batch`` prompts (``AdapterScorer.generate``). Each record carries ``sec``: its share of the suite batch's
wall time (the per-item cost the benchmark reports).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

import numpy as np

from app.core.gates import conditioning_margin
from app.eval.answers import exact_match, is_refusal, is_well_formed
from app.eval.scorer import AdapterScorer


class SuiteWorker:
    """Ray Data callable class: ``__call__(batch) -> batch`` with columns suite, payload -> suite, result."""

    def __init__(self, model_dir: str, adapter_dir: str | None, max_length: int, task_max_new_tokens: int,
                 safety_max_new_tokens: int, variants: tuple[str, ...] = ("adapter", "base"),
                 threads: int | None = None, scorer_dir: str | None = None, generate_batch: int | None = None,
                 merge_adapter: bool = False):
        self.scorer = AdapterScorer(model_dir, adapter_dir, max_length, threads)
        if merge_adapter:  # base side scored here too: by a plain copy of the base next to the merged adapter
            self.scorer.merge(keep_base="base" in variants)
        self.harmless = None
        if scorer_dir:  # learned harmlessness scorer: a reward model trained on HH-RLHF harmless pairs
            from app.models.reward_head import load_reward_model

            self.harmless = load_reward_model(scorer_dir)
        self.task_tokens, self.safety_tokens = task_max_new_tokens, safety_max_new_tokens
        self.variants = tuple(variants)
        self.generate_batch = generate_batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        groups: dict[str, list[dict]] = defaultdict(list)
        for suite, payload in zip(batch["suite"], batch["payload"]):
            groups[str(suite)].append(json.loads(payload))
        suites, results = [], []
        for suite, rows in groups.items():
            t0 = time.perf_counter()
            out = getattr(self, f"_{suite}")(rows)
            sec = (time.perf_counter() - t0) / max(len(out), 1)
            for result in out:
                suites.append(suite)
                results.append(json.dumps({**result, "sec": sec}))
        return {"suite": suites, "result": results}

    def _ppl(self, rows: list[dict]) -> list[dict]:
        prompts = [[{"role": "user", "content": r["question"]}] for r in rows]
        targets = [r["answer"] for r in rows]
        result = [{"id": r["id"]} for r in rows]
        for v in self.variants:
            for res, (nll, n) in zip(result, self.scorer.sequence_nll(prompts, targets, v)):
                res[f"{v}_nll"], res["tokens"] = nll, n
        if "other_answer" in rows[0]:  # the same questions followed by another question's answer
            others = [r["other_answer"] for r in rows]
            for v in self.variants:
                for res, (nll, n) in zip(result, self.scorer.sequence_nll(prompts, others, v)):
                    res[f"{v}_other_nll"], res["other_tokens"] = nll, n
        return result

    def _general(self, rows: list[dict]) -> list[dict]:
        texts = [r["text"] for r in rows]
        result = [{"id": r["id"]} for r in rows]
        for v in self.variants:
            for res, (nll, n) in zip(result, self.scorer.text_nll(texts, v)):
                res[f"{v}_nll"], res["tokens"] = nll, n
        return result

    def _task(self, rows: list[dict]) -> list[dict]:
        prompts = [[{"role": "user", "content": r["question"]}] for r in rows]
        result = [{"id": r["id"], "question": r["question"]} for r in rows]
        for v in self.variants:
            for res, r, a in zip(result, rows, self.scorer.generate(prompts, self.task_tokens, v, self.generate_batch)):
                res |= {f"{v}_answer": a, f"{v}_correct": exact_match(a, r["answer"]),
                        f"{v}_well_formed": is_well_formed(a)}
        return result

    def _benchmark(self, rows: list[dict]) -> list[dict]:
        prompts = [r["messages"] for r in rows]
        result = [{"id": r["id"]} for r in rows]
        for v in self.variants:
            chosen = self.scorer.sequence_nll(prompts, [r["chosen"] for r in rows], v)
            rejected = self.scorer.sequence_nll(prompts, [r["rejected"] for r in rows], v)
            for res, c, j in zip(result, chosen, rejected):
                res[f"{v}_correct"] = c[0] < j[0]  # lower NLL = higher log-likelihood for the chosen reply
        return result

    def _safety(self, rows: list[dict]) -> list[dict]:
        prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows]
        out = {v: self.scorer.generate(prompts, self.safety_tokens, v, self.generate_batch) for v in self.variants}
        result = [{"id": r["id"], "prompt": r["prompt"]} for r in rows]
        for v in self.variants:
            for res, a in zip(result, out[v]):
                res |= {f"{v}_reply": a, f"{v}_refused": is_refusal(a)}
        if self.harmless is not None:
            for v in self.variants:
                rewards = self.harmless_scores([r["prompt"] for r in rows], out[v])
                for res, p in zip(result, rewards):
                    res[f"{v}_harmless"] = p
        return result

    def harmless_scores(self, prompts: list[str], replies: list[str]) -> list[float]:
        """P(harmless) = sigmoid(reward) of each (red-team prompt, reply) under the reward model's chat template."""
        import torch

        tok = self.harmless.tokenizer
        texts = [tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                         tokenize=False) for p, r in zip(prompts, replies)]
        return torch.sigmoid(self.harmless.score_texts(texts)).tolist()


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Suite rows → metrics (floats) plus the per-row records the report and the judge need."""
    return {"metrics": suite_metrics(records_by_suite(results)), "records": records_by_suite(results)}


def records_by_suite(results: list[dict[str, Any]]) -> dict[str, list[dict]]:
    """Ray Data output rows (suite, JSON result) → {suite: records sorted by item id}."""
    by: dict[str, list[dict]] = defaultdict(list)
    for row in results:
        by[row["suite"]].append(json.loads(row["result"]) if isinstance(row["result"], str) else row["result"])
    for rows in by.values():
        rows.sort(key=lambda r: r["id"])
    return dict(by)


def suite_metrics(records: dict[str, list[dict]]) -> dict[str, float]:
    """Per-suite records (adapter and base fields) → metrics."""
    by: dict[str, list[dict]] = defaultdict(list, records)
    metrics: dict[str, float] = {}
    if by["ppl"]:
        tokens = sum(r["tokens"] for r in by["ppl"])
        metrics["ppl_adapter"] = float(np.exp(sum(r["adapter_nll"] for r in by["ppl"]) / tokens))
        metrics["ppl_base"] = float(np.exp(sum(r["base_nll"] for r in by["ppl"]) / tokens))
        metrics["ppl_tokens"] = float(tokens)
        if "other_tokens" in by["ppl"][0]:
            other = sum(r["other_tokens"] for r in by["ppl"])
            for v in ("adapter", "base"):
                own_nll, other_nll = sum(r[f"{v}_nll"] for r in by["ppl"]), sum(r[f"{v}_other_nll"] for r in by["ppl"])
                metrics[f"ppl_other_{v}"] = float(np.exp(other_nll / other))
                metrics[f"cond_margin_{v}"] = conditioning_margin(own_nll, tokens, other_nll, other)
    if by["general"]:
        tokens = sum(r["tokens"] for r in by["general"])
        for v in ("adapter", "base"):
            metrics[f"general_ppl_{v}"] = float(np.exp(sum(r[f"{v}_nll"] for r in by["general"]) / tokens))
        metrics["general_ppl_n"] = float(len(by["general"]))
    for suite, key, prefix in (("task", "correct", "gsm8k_em"), ("task", "well_formed", "answer_format"),
                               ("benchmark", "correct", "bench_acc"),
                               ("safety", "refused", "refusal_rate"), ("safety", "harmless", "harmless")):
        rows = by[suite]
        if rows and f"adapter_{key}" in rows[0]:
            metrics[f"{prefix}_adapter"] = float(np.mean([r[f"adapter_{key}"] for r in rows]))
            if f"base_{key}" in rows[0]:
                metrics[f"{prefix}_base"] = float(np.mean([r[f"base_{key}"] for r in rows]))
            metrics[f"{prefix}_n"] = float(len(rows))
    return metrics
