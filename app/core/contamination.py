"""Benchmark contamination by word n-gram overlap (GPT-3 / Llama-2 style 13-gram check).

Text is normalized (lower-case, words = runs of letters/digits), n-grams are hashed to 64-bit ints, and a text is
contaminated when it shares at least ``min_hits`` n-grams with a benchmark item. Texts shorter than n words are
compared as one whole-text gram, so short benchmark items can still be caught verbatim.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Iterable

_WORD = re.compile(r"[a-z0-9]+")


def normalize_words(text: str) -> list[str]:
    """Lower-cased alphanumeric word tokens (punctuation and whitespace differences vanish)."""
    return _WORD.findall(text.lower())


def _hash_gram(words: Iterable[str]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(words).encode(), digest_size=8).digest(), "little")


def ngram_hashes(text: str, n: int) -> set[int]:
    """The set of hashed word n-grams of ``text`` (one whole-text gram if it has fewer than n words)."""
    words = normalize_words(text)
    if not words:
        return set()
    if len(words) < n:
        return {_hash_gram(words)}
    return {_hash_gram(words[i : i + n]) for i in range(len(words) - n + 1)}


def build_ngram_index(items: Iterable[tuple[str, str]], n: int) -> dict[int, list[str]]:
    """Map n-gram hash -> ids of benchmark items containing it, from (item_id, text) pairs."""
    index: dict[int, list[str]] = defaultdict(list)
    for item_id, text in items:
        for h in ngram_hashes(text, n):
            index[h].append(item_id)
    return dict(index)


def find_overlaps(text: str, index: dict[int, list[str]], n: int, min_hits: int = 1) -> dict[str, int]:
    """Benchmark item id -> number of shared n-grams, for items sharing at least ``min_hits`` with ``text``."""
    hits: dict[str, int] = defaultdict(int)
    for h in ngram_hashes(text, n):
        for item_id in index.get(h, ()):
            hits[item_id] += 1
    return {k: v for k, v in hits.items() if v >= min_hits}
