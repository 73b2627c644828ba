"""Word n-gram contamination: hand-worked overlaps and normalization."""

from __future__ import annotations

from app.core.contamination import build_ngram_index, find_overlaps, ngram_hashes, normalize_words


def test_normalize_words():
    assert normalize_words("It's 3,000 apples!") == ["it", "s", "3", "000", "apples"]


def test_ngram_counts_hand_worked():
    assert len(ngram_hashes("a b c d e", 3)) == 3  # abc, bcd, cde
    assert len(ngram_hashes("a b", 3)) == 1  # shorter than n: one whole-text gram
    assert ngram_hashes("", 3) == set()


def test_find_overlaps():
    index = build_ngram_index([("q1", "the quick brown fox jumps over"), ("q2", "lazy dogs sleep all day long")], 4)
    hits = find_overlaps("Yesterday THE quick, brown fox jumps!", index, 4)
    assert hits == {"q1": 2}  # "the quick brown fox", "quick brown fox jumps"
    assert find_overlaps("the quick brown cat", index, 4) == {}
    assert find_overlaps("the quick brown fox jumps over", index, 4, min_hits=3) == {"q1": 3}
