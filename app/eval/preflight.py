"""Checks that run before any scoring: who judges, who scores safety, and whether they can read the prompts.

Each failure is one ConfigError line naming the config key (or folder) and what is wrong:
- the judge may not be the candidate's own base model (it judges its own family and is position-biased) unless
  ``judge.allow_base``; a reward-model judge / safety scorer must be a reward folder (lineage method 'reward');
- a scorer or judge folder whose lineage base SHA is not the SHA of the base it names (its LoRA would be applied to
  other weights than it was trained on);
- a judge tokenizer that cannot read the prompt: no chat template, 'A'/'B' not single tokens, unknown tokens in a
  rendered judge prompt, or a prompt longer than the judge's context.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.config.errors import ConfigError
from app.eval.judges import JUDGE_TEMPLATE

LINEAGE = "rayalign_lineage.json"


def reward_folder(source: str, key: str) -> Path:
    """A reward model folder whose recorded base SHA matches the base it names today."""
    from app.models.loader import ModelLoadError, base_sha, resolve_model
    from app.models.reward_head import check_reward_model_folder

    folder = Path(source).expanduser()
    try:
        lineage = check_reward_model_folder(folder)
    except ModelLoadError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    recorded, base = lineage.get("base_sha"), lineage.get("base_model_source")
    if recorded and base and (folder / "adapter_config.json").is_file():
        actual = base_sha(resolve_model(base).path)
        if actual != recorded:
            raise ConfigError(f"{key}: {folder} was trained on base {recorded[:12]}, but {base} is now {actual[:12]}: "
                              "its LoRA would score with other weights than it was trained on")
    return folder


def judge_folder(cfg, candidate_base_sha: str) -> Path | None:
    """The judge's folder (None: no judge), refusing the candidate's own base unless judge.allow_base."""
    from app.models.loader import base_sha, resolve_model

    j = cfg.judge
    if j.kind == "none":
        return None
    if j.kind == "reward_model":
        if not j.source:
            raise ConfigError("judge.source: a reward_model judge needs a reward model folder")
        return reward_folder(j.source, "judge.source")
    path = resolve_model(j.source).path if j.source else resolve_model(cfg.model).path
    if base_sha(path) == candidate_base_sha and not j.allow_base:
        raise ConfigError(f"judge.source: {j.source or cfg.model.source} is the candidate's own base model; set "
                          "judge.source to a reward model or another model folder (or judge.allow_base=true)")
    return Path(path)


def check_judge_reads(folder: Path, kind: str, questions: list[str], key: str = "judge.source") -> None:
    """The judge's tokenizer must render and read the judge prompt for every question (answers still empty)."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if not tok.chat_template:
        raise ConfigError(f"{key}: the tokenizer in {folder} has no chat template; it cannot read the judge prompt")
    if kind == "causal_lm":
        for letter in ("A", "B"):
            if len(tok.encode(letter, add_special_tokens=False)) != 1:
                raise ConfigError(f"{key}: the tokenizer in {folder} does not encode {letter!r} as one token")
    config_dir = folder
    if (folder / "adapter_config.json").is_file() and (folder / LINEAGE).is_file():  # a LoRA folder: its base's
        from app.models.loader import resolve_model

        config_dir = resolve_model(json.loads((folder / LINEAGE).read_text())["base_model_source"]).path
    limit = getattr(AutoConfig.from_pretrained(config_dir), "max_position_embeddings", None)
    for i, q in enumerate(questions):
        content = JUDGE_TEMPLATE.format(question=q, a="", b="") if kind == "causal_lm" else q
        ids = tok.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                      tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        unknown = sum(t == tok.unk_token_id for t in ids) if tok.unk_token_id is not None else 0
        if unknown:
            raise ConfigError(f"{key}: the tokenizer in {folder} cannot read judge prompt {i}: {unknown} unknown tokens")
        if limit and len(ids) > limit:
            raise ConfigError(f"{key}: judge prompt {i} is {len(ids)} tokens, over the judge's context of {limit}")
