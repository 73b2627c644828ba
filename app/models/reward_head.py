"""Reward models: a base causal LM with a scalar head, pooled at each sequence's last token.

Built on transformers' ``AutoModelForSequenceClassification`` (``num_labels=1``: the head is the ``score``
Linear[H → 1]) so the saved folder is a standard layout other tools read; with LoRA it is a peft ``SEQ_CLS``
adapter whose ``modules_to_save`` carries the head. Scoring runs padding-free: sequences are packed into one row
and the head is applied only at each sequence's last token (no [B, T] head output, no pad-token pooling rules).

On-disk layout (written by the reward job, read by the PPO reward actor and the eval gates)::

    <dir>/adapter_config.json, adapter_model.safetensors   LoRA: peft adapter incl. the score head
    <dir>/config.json, model.safetensors                   full fine-tune: the whole classifier instead
    <dir>/tokenizer files                                  the tokenizer used in training
    <dir>/rayalign_lineage.json                            method "reward", base_model_source, base_sha, metrics …

    rm = load_reward_model(dir)                 # LoadedRewardModel, eval mode, CPU
    rm.score([[1, 2, 3], [4, 5]])               # tensor [2] of scalar rewards for token-id sequences
    rm.score_texts(["<|im_start|>user …"])      # same for already chat-formatted texts
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from app.core.logprobs import PackedSequences, concat_for_packed_forward

LINEAGE_FILE = "rayalign_lineage.json"


def build_reward_model(base_path: str | Path, lora: Any | None, pad_token_id: int | None, dtype: str = "float32"):
    """A scalar-head classifier on top of ``base_path``; wrapped with a trainable LoRA (+ full head) when ``lora`` is given.

    ``lora``: an app.config.common.LoraSpec, or None for full fine-tuning.
    """
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1, dtype=getattr(torch, dtype))
    model.config.pad_token_id = pad_token_id
    if lora is None:
        return model
    from peft import get_peft_model

    from app.models.lora import lora_config

    return get_peft_model(model, lora_config(lora, "SEQ_CLS"))  # SEQ_CLS: the score head is trained and saved in full


def score_packed(model, packed: PackedSequences) -> torch.Tensor:
    """Scalar reward per sequence of a packed row: score_head(h_last). Returns [n_seqs] float32.

    One backbone pass over the [1, N] row; the Linear[H → 1] head only at the n_seqs last-token positions.
    Works on the plain classifier and through a peft wrapper (LoRA layers and the saved head copy stay active).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone, head = getattr(base, base.base_model_prefix), base.score
    hidden = backbone(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False).last_hidden_state[0]
    return head(hidden[packed.last_token_index]).squeeze(-1).float()


def score_pairs(model, chosen_ids: Sequence[Sequence[int]], rejected_ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of chosen and rejected sequences ([B] each) from one packed forward of all 2B sequences."""
    scores = score_packed(model, concat_for_packed_forward(list(chosen_ids) + list(rejected_ids)))
    return scores[: len(chosen_ids)], scores[len(chosen_ids):]


def save_reward_model(model, tokenizer, out_dir: str | Path, lineage: dict[str, Any]) -> Path:
    """Write the reward model (peft adapter + head, or the full classifier), its tokenizer and lineage JSON."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, sort_keys=True), encoding="utf-8")
    return out


@dataclass
class LoadedRewardModel:
    """A reward model ready to score: ``score(token_id_lists)`` / ``score_texts(texts)`` → tensor [n]."""

    model: Any
    tokenizer: Any
    lineage: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def score(self, sequences: Sequence[Sequence[int]], batch_size: int = 16) -> torch.Tensor:
        out = [score_packed(self.model, concat_for_packed_forward(sequences[i : i + batch_size])) for i in range(0, len(sequences), batch_size)]
        return torch.cat(out) if out else torch.zeros(0)

    def score_texts(self, texts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        return self.score(ids, batch_size)


def _has_score_head(folder: Path) -> bool:
    """A saved ``score`` Linear: in the peft adapter (``modules_to_save``) or the full classifier's weights."""
    from safetensors import safe_open

    weights = folder / ("adapter_model.safetensors" if (folder / "adapter_config.json").is_file() else "model.safetensors")
    if not weights.is_file():
        return False
    with safe_open(str(weights), framework="pt") as fh:
        return any(key.split(".")[-2:-1] == ["score"] or ".score." in key for key in fh.keys())


def check_reward_model_folder(path: str | Path) -> dict[str, Any]:
    """Cheap pre-flight of a reward model folder (no weights loaded): its lineage, or a one-line ModelLoadError.

    Checks: the folder exists, has ``rayalign_lineage.json`` with method 'reward' and a base SHA, and its weights
    carry a scalar ``score`` head (an SFT adapter or a plain LM folder has none).
    """
    from app.models.loader import ModelLoadError

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: reward model folder not found")
    lineage_file = folder / LINEAGE_FILE
    if not lineage_file.is_file():
        raise ModelLoadError(f"{folder}: not a reward model folder (no {LINEAGE_FILE})")
    lineage = json.loads(lineage_file.read_text(encoding="utf-8"))
    if lineage.get("method") != "reward":
        raise ModelLoadError(f"{folder}: not a reward model (lineage method is {lineage.get('method')!r}, not 'reward')")
    if not _has_score_head(folder):
        raise ModelLoadError(f"{folder}: not a reward model (its weights have no 'score' head)")
    if not lineage.get("base_sha"):
        raise ModelLoadError(f"{folder}: reward model lineage has no base_sha")
    return lineage


def load_reward_model(path: str | Path, dtype: str = "float32") -> LoadedRewardModel:
    """Load a reward model folder written by :func:`save_reward_model` (LoRA or full), in eval mode on CPU.

    A LoRA folder names its base in ``rayalign_lineage.json`` (``base_model_source``), resolved like any model source.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from app.models.loader import resolve_model

    folder = Path(path).expanduser()
    lineage = check_reward_model_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        base = resolve_model(lineage["base_model_source"]).path
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=getattr(torch, dtype))
        model.config.pad_token_id = tokenizer.pad_token_id
        model = PeftModel.from_pretrained(model, folder)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=getattr(torch, dtype))
    model.eval()
    return LoadedRewardModel(model, tokenizer, lineage)
