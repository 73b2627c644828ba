"""Prompts for PPO: read a 'prompt' dataset artifact or a JSONL file, render with the chat template, walk a cursor.

Rows become ``Prompt(text, ids, reference)``; ``PromptCursor`` hands out fixed-order batches and is part of every
checkpoint so a resumed run continues with the next unseen prompts.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from app.config.errors import ConfigError
from app.config.paths import shared_dir


@dataclass(frozen=True)
class Prompt:
    """One prompt: rendered chat text, its token ids, and the reference answer ('' when none)."""

    text: str
    ids: list[int]
    reference: str


def expand_path(path: str) -> Path:
    """'${shared}/…' -> the shared assets folder."""
    if "${shared}" in path:
        root = shared_dir()
        if root is None:
            raise ConfigError(f"prompts.path {path!r} uses ${{shared}} but the shared assets folder is absent")
        path = path.replace("${shared}", str(root))
    return Path(path).expanduser()


def _rows_from_jsonl(path: Path) -> list[tuple[list[dict], str]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path} row {n}: invalid JSON ({exc.msg})") from None
            question = rec.get("question", rec.get("prompt"))
            if not isinstance(question, str) or not question.strip():
                raise ConfigError(f"{path} row {n}: field 'question' (or 'prompt') must be a non-empty string")
            reference = rec.get("answer", rec.get("reference", ""))
            if not isinstance(reference, str):
                raise ConfigError(f"{path} row {n}: field 'answer'/'reference' must be a string")
            rows.append(([{"role": "user", "content": question}], reference))
    return rows


def prompt_dataset_id(path: str) -> str:
    """The lineage id of a prompt source: a dataset artifact's manifest id, or ``jsonl-<sha256[:16]>`` of a JSONL
    file's bytes (a path is not an id: it moves between machines and can exceed the registry's 128 characters)."""
    from app.data.artifact import resolve_artifact_dir
    from app.train.checkpoint import file_digest

    p = expand_path(path)
    if p.is_dir():
        manifest = resolve_artifact_dir(p) / "manifest.json"
        if manifest.is_file():
            artifact_id = json.loads(manifest.read_text(encoding="utf-8")).get("id")
            if artifact_id:
                return str(artifact_id)
        raise ConfigError(f"prompts.path {p}: a dataset artifact needs a manifest.json with an 'id'")
    return f"jsonl-{file_digest(p)['sha256'][:16]}"


def _rows_from_artifact(folder: Path, split: str) -> list[tuple[list[dict], str]]:
    import pyarrow.parquet as pq

    from app.data.artifact import resolve_artifact_dir

    folder = resolve_artifact_dir(folder)  # a dataset name resolves to its newest version
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise ConfigError(f"{folder}: not a dataset artifact (no manifest.json)")
    record_type = json.loads(manifest.read_text()).get("record_type")
    if record_type != "prompt":
        raise ConfigError(f"{folder}: manifest record_type is {record_type!r}, PPO needs 'prompt'")
    files = sorted((folder / split).glob("*.parquet"))
    if not files:
        raise ConfigError(f"{folder}: split {split!r} has no parquet files")
    rows = []
    for f in files:
        table = pq.read_table(f, columns=["messages", "reference"]).to_pylist()
        for n, rec in enumerate(table):
            try:
                messages = json.loads(rec["messages"])
            except (TypeError, json.JSONDecodeError):
                raise ConfigError(f"{f} row {n}: field 'messages' is not a JSON list of chat messages") from None
            while messages and messages[-1].get("role") == "assistant":  # a trailing answer is not part of the prompt
                messages = messages[:-1]
            rows.append((messages, rec["reference"] or ""))  # earlier assistant turns stay (multi-turn HH prompts)
    return rows


def solution_steps(reference: str) -> int:
    """Calculator steps ``<<a+b=c>>`` in a GSM8K reference solution (0 for a bare answer): a difficulty proxy."""
    return reference.count("<<")


def load_prompts(path: str, tokenizer, system_prompt: str = "", split: str = "train", max_prompts: int | None = None,
                 max_prompt_tokens: int = 256, max_solution_steps: int | None = None,
                 response_prefix: str = "") -> list[Prompt]:
    """Read, render (chat template + generation prompt) and tokenize prompts; long prompts keep their last tokens.

    ``response_prefix`` pre-fills the assistant turn (e.g. 'The answer is'): it is appended after the generation
    prompt, so sampling continues from it; the reward must then score ``response_prefix + response``.

    ``max_solution_steps`` keeps only rows whose reference needs at most that many calculator steps (applied before
    ``max_prompts``): an easy curriculum where a small model's sampled answers are sometimes right.
    """
    p = expand_path(path)
    if p.is_dir():
        rows = _rows_from_artifact(p, split)
    elif p.is_file():
        rows = _rows_from_jsonl(p)
    else:
        raise ConfigError(f"prompts.path not found: {p}")
    if max_solution_steps is not None:
        rows = [r for r in rows if solution_steps(r[1]) <= max_solution_steps]
    if max_prompts:
        rows = rows[:max_prompts]
    if not rows:
        raise ConfigError(f"{p}: no prompts")
    out = []
    for messages, reference in rows:
        if system_prompt:
            messages = [{"role": "system", "content": system_prompt}, *[m for m in messages if m["role"] != "system"]]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + response_prefix
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][-max_prompt_tokens:]
        out.append(Prompt(text, ids, reference))
    return out


class PromptCursor:
    """A fixed shuffled order of prompt indices and a position in it (wraps around, reshuffling per epoch)."""

    def __init__(self, n: int, seed: int, position: int = 0):
        self.n, self.seed, self.position = n, seed, position

    def _order(self, epoch: int) -> list[int]:
        order = list(range(self.n))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def take(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            epoch, i = divmod(self.position, self.n)
            out.append(self._order(epoch)[i])
            self.position += 1
        return out

    def state_dict(self) -> dict:
        return {"n": self.n, "seed": self.seed, "position": self.position}
