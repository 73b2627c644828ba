"""Rule-based, verifiable rewards for math prompts (GSM8K): answer extraction, exact match, answer format.

Pure string functions; ``app.ppo.actors.RewardActor`` looks them up by name in ``RULE_REWARDS`` (the extension point:
add a ``(response, reference) -> float`` function there).
"""

from __future__ import annotations

import re
from typing import Callable

_NUMBER = r"-?[\d,]*\.?\d+"
_HASH_ANSWER = re.compile(rf"####\s*\$?\s*({_NUMBER})")
_SAYS_ANSWER = re.compile(rf"answer is[:\s]*\$?\s*({_NUMBER})", re.IGNORECASE)
_ANY_NUMBER = re.compile(_NUMBER)
_ANSWER_ONLY = re.compile(rf"\s*the answer is\s*\$?\s*{_NUMBER}\s*\.?\s*", re.IGNORECASE)


def normalize_number(text: str) -> str | None:
    """'1,234.50' -> '1234.5', '-3' -> '-3', '7.0' -> '7'; None when not a number."""
    cleaned = text.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return str(int(value)) if value == int(value) else repr(value)


def extract_answer(response: str) -> str | None:
    """The final answer of a response: after '####', else after 'answer is', else the last number; normalized."""
    for pattern in (_HASH_ANSWER, _SAYS_ANSWER):
        found = pattern.findall(response)
        if found:
            return normalize_number(found[-1])
    numbers = _ANY_NUMBER.findall(response)
    return normalize_number(numbers[-1]) if numbers else None


def reference_answer(reference: str) -> str | None:
    """The gold number of a GSM8K answer field ('... #### 72') or of a bare number ('72')."""
    if "####" in reference:
        reference = reference.rsplit("####", 1)[1]
    return normalize_number(reference)


def exact_match_reward(response: str, reference: str) -> float:
    """1.0 when the extracted final answer equals the reference number, else 0.0."""
    gold = reference_answer(reference)
    return float(gold is not None and extract_answer(response) == gold)


def format_reward(response: str, reference: str = "") -> float:
    """1.0 when the response states its answer in the requested form ('#### <number>' or 'The answer is <number>')."""
    del reference
    return float(bool(_HASH_ANSWER.search(response) or _SAYS_ANSWER.search(response)))


def answer_only_format_reward(response: str, reference: str = "") -> float:
    """1.0 when the whole response is the answer sentence 'The answer is <number>.' and nothing else.

    A response cut by the generation cap still has text after the number (or no number), so this also means "a
    parseable answer that ended within the cap".
    """
    del reference
    return float(_ANSWER_ONLY.fullmatch(response) is not None)


def gsm8k_reward(response: str, reference: str) -> float:
    """Exact match plus a 0.5 format bonus: a shaped, still verifiable reward (range 0 .. 1.5)."""
    return exact_match_reward(response, reference) + 0.5 * format_reward(response)


def gsm8k_answer_only_reward(response: str, reference: str) -> float:
    """Exact match (1.0) plus 0.2 when the response is only the answer sentence (range 0 .. 1.2).

    Made for answer-first prompts (the assistant turn pre-filled with 'The answer is'): correctness dominates, the
    small format term rewards stopping right after the number.
    """
    return exact_match_reward(response, reference) + 0.2 * answer_only_format_reward(response)


RULE_REWARDS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match_reward,
    "format": format_reward,
    "answer_only_format": answer_only_format_reward,
    "gsm8k": gsm8k_reward,
    "gsm8k_answer_only": gsm8k_answer_only_reward,
}

# The components of each composite rule, reported separately per PPO iteration (fractions of samples).
RULE_COMPONENTS: dict[str, dict[str, Callable[[str, str], float]]] = {
    "gsm8k": {"exact_match": exact_match_reward, "format_ok": format_reward},
    "gsm8k_answer_only": {"exact_match": exact_match_reward, "format_ok": answer_only_format_reward},
}


def combine_rewards(components: dict[str, list[float]], weights: dict[str, float], lengths: list[int],
                    length_penalty: float = 0.0, free_tokens: int = 0, min_tokens: int = 0,
                    short_penalty: float = 0.0) -> list[float]:
    """Sequence rewards from several sources: sum_k w_k * r_k[i] - length_penalty * max(0, lengths[i] - free_tokens)
    - short_penalty * [lengths[i] < min_tokens].

    ``components``: source name -> one score per response (e.g. 'model', 'rule'); a source without a weight counts 0
    (logged elsewhere, not rewarded). The length term is the usual guard against a reward model that pays for
    verbosity (Singhal et al. 2023, "A Long Way to Go"); the short-reply term guards the opposite failure, a reward
    model that scores an empty reply above real ones (HH-RLHF run 1 in benchmarks/results/hh_rlhf.json collapsed to
    it). ``lengths`` are response token counts (end of turn included).
    """
    n = len(lengths)
    for name, scores in components.items():
        if len(scores) != n:
            raise ValueError(f"reward source {name!r} has {len(scores)} scores for {n} responses")
    return [sum(weights.get(name, 0.0) * scores[i] for name, scores in components.items())
            - length_penalty * max(0, lengths[i] - free_tokens) - (short_penalty if lengths[i] < min_tokens else 0.0)
            for i in range(n)]
