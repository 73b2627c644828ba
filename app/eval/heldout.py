"""Read held-out eval data: GSM8K-format jsonl and HH-RLHF transcripts (jsonl or jsonl.gz) into chat messages.

Bad rows raise DataError-style ConfigErrors naming the file, line and field: eval data is small and curated,
so a broken row is a broken eval, not something to skip silently.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Iterator

from app.config.errors import ConfigError
from app.config.paths import REPO_ROOT, shared_dir

_TURN = re.compile(r"\n\n(Human|Assistant): ")


def resolve_data_path(spec: str) -> Path:
    """'shared:data/x.jsonl' → ../shared/data/x.jsonl; relative paths are relative to the repo root."""
    if spec.startswith("shared:"):
        root = shared_dir()
        if root is None:
            raise ConfigError(f"{spec}: the shared assets folder (../shared or $RAYALIGN_SHARED) is absent")
        path = root / spec.split(":", 1)[1]
    else:
        path = Path(spec).expanduser()
        path = path if path.is_absolute() else REPO_ROOT / path
    if not path.is_file():
        raise ConfigError(f"eval data file not found: {path}")
    return path


def _lines(path: Path) -> Iterator[tuple[int, dict]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path} line {lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{path} line {lineno}: expected a JSON object")
            yield lineno, row


def read_qa(path: Path) -> list[dict]:
    """GSM8K rows {question, answer} (answer ends in '#### n'), with their line numbers."""
    rows = []
    for lineno, row in _lines(path):
        for key in ("question", "answer"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise ConfigError(f"{path} line {lineno}: field '{key}' must be a non-empty string")
        rows.append({"line": lineno, "question": row["question"], "answer": row["answer"]})
    return rows


def transcript_messages(text: str) -> list[dict]:
    """'\\n\\nHuman: a\\n\\nAssistant: b' → [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]."""
    parts = _TURN.split(text)
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return messages


def read_preference_pairs(path: Path, offset: int, limit: int) -> list[dict]:
    """HH-RLHF pairs as {messages (shared prompt turns), chosen, rejected} (final assistant replies)."""
    pairs = []
    for lineno, row in _lines(path):
        if lineno <= offset:
            continue
        for key in ("chosen", "rejected"):
            if not isinstance(row.get(key), str):
                raise ConfigError(f"{path} line {lineno}: field '{key}' must be a transcript string")
        chosen, rejected = transcript_messages(row["chosen"]), transcript_messages(row["rejected"])
        if len(chosen) < 2 or chosen[-1]["role"] != "assistant" or len(rejected) < 2:
            raise ConfigError(f"{path} line {lineno}: field 'chosen' must end with an 'Assistant:' turn")
        if chosen[-1]["content"] == rejected[-1]["content"] or not chosen[-1]["content"] or not rejected[-1]["content"]:
            continue  # identical or empty replies carry no preference signal
        pairs.append({"line": lineno, "messages": chosen[:-1], "chosen": chosen[-1]["content"],
                      "rejected": rejected[-1]["content"]})
        if len(pairs) >= limit:
            break
    return pairs


def read_redteam_prompts(path: Path, limit: int) -> list[dict]:
    """The first human turn of each HH-RLHF harmless transcript: a red-team request."""
    prompts = []
    for lineno, row in _lines(path):
        if not isinstance(row.get("chosen"), str):
            raise ConfigError(f"{path} line {lineno}: field 'chosen' must be a transcript string")
        turns = transcript_messages(row["chosen"])
        if not turns or turns[0]["role"] != "user" or not turns[0]["content"]:
            raise ConfigError(f"{path} line {lineno}: field 'chosen' must start with a 'Human:' turn")
        prompts.append({"line": lineno, "prompt": turns[0]["content"]})
        if len(prompts) >= limit:
            break
    return prompts


def read_general_text(spec: str, limit: int, words: int) -> list[dict]:
    """General-text passages for the forgetting gate, ``words`` words each, deterministic order.

    'stdlib:pydoc_data': the Python reference documentation that ships with CPython (``pydoc_data.topics``, PSF
    licence; the interpreter's LICENSE.txt): one passage from the start of each topic, topics in sorted order.
    Otherwise a jsonl(.gz) file of {"text": ...} rows (e.g. chitchat-dataset conversations, MIT), one passage per row.
    """
    if spec == "stdlib:pydoc_data":
        from pydoc_data.topics import topics

        texts = [(f"pydoc_data.topics[{k!r}]", topics[k]) for k in sorted(topics)]
    else:
        path = resolve_data_path(spec)
        texts = []
        for lineno, row in _lines(path):
            if not isinstance(row.get("text"), str) or not row["text"].strip():
                raise ConfigError(f"{path} line {lineno}: field 'text' must be a non-empty string")
            texts.append((f"{path.name}:{lineno}", row["text"]))
    passages = []
    for source, text in texts:
        chunk = text.split()[:words]
        if len(chunk) < min(words, 8):
            continue
        passages.append({"source": source, "text": " ".join(chunk)})
        if len(passages) >= limit:
            break
    return passages
