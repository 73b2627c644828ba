"""Curation operators on a planted corpus (no Ray: the same callables the pipeline runs inside map_batches)."""

from __future__ import annotations

import json
import random

import numpy as np

from app.data.curation import (
    REJECTED,
    CurationStage,
    QualityRules,
    keep_copies,
    quality_reason,
    row_fraction,
    sampling_rates,
    scrub_pii,
)

EN = "the farmer sold apples at the market and bought some new seeds for the spring planting season".split()
RU = "фермер продал яблоки на рынке и купил новые семена для весеннего посева в этом году".split()
ZH = list("农民在市场上卖了苹果并为春天的播种季节买了一些新种子今天天气很好")


def _luhn_number(rng: random.Random) -> str:
    digits = [rng.randrange(10) for _ in range(15)]
    total = sum(d if i % 2 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return "".join(map(str, digits + [(10 - total % 10) % 10]))


def _planted(rng: random.Random) -> tuple[str, str, str]:
    kind = rng.choice(["email", "phone", "ip", "credit_card", "api_key"])
    if kind == "email":
        value = f"{rng.choice(['ann', 'bo.lee', 'c_x+tag'])}{rng.randrange(999)}@{rng.choice(['mail', 'corp-x'])}.{rng.choice(['com', 'org', 'io'])}"
    elif kind == "phone":
        value = rng.choice([f"+1 415-{rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}",
                            f"(030) {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
                            f"555-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"])
    elif kind == "ip":
        value = ".".join(str(rng.randrange(256)) for _ in range(4))
    elif kind == "credit_card":
        n = _luhn_number(rng)
        value = rng.choice([n, " ".join(n[i : i + 4] for i in range(0, 16, 4))])
    else:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        value = rng.choice([f"sk-{''.join(rng.choices(alphabet, k=40))}", f"AKIA{''.join(rng.choices(alphabet[:26] + alphabet[52:], k=16))}",
                            f"ghp_{''.join(rng.choices(alphabet, k=36))}"])
    return kind, value, f"{' '.join(rng.choices(EN, k=8))} contact {value} {' '.join(rng.choices(EN, k=6))}"


def test_pii_recall_on_planted_strings_and_typed_placeholders():
    rng = random.Random(0)
    found, planted = 0, 0
    for _ in range(1000):
        kind, value, text = _planted(rng)
        out, counts = scrub_pii(text)
        planted += 1
        found += value not in out and counts[kind] == 1 and f"<{kind.upper()}>" in out
    assert found / planted >= 0.99, found / planted
    clean = "Natalia sold 48 clips in April and 24 in May, 72 in all. #### 72"
    assert scrub_pii(clean) == (clean, dict.fromkeys(["email", "phone", "ip", "credit_card", "api_key"], 0))
    assert scrub_pii("card 4111 1111 1111 1112 is not Luhn-valid")[1]["credit_card"] == 0
    assert scrub_pii("Call +1 415-555-0134.")[0] == "Call <PHONE>."  # at the end of a sentence too


def test_junk_rows_are_rejected_with_their_reason():
    junk = {
        "two words": "too few words",
        "### ### ### ### ... ### word ###": "symbol-to-word ratio",
        "buy now\nbuy now\nbuy now\nbuy now\nreal line": "duplicate-line fraction",
        "Lorem ipsum dolor sit amet consectetur adipiscing": "lorem ipsum",
        "1234 5678 9012 3456 7890 1234 5678": "words with a letter",
        "click here click here click here click here click here": "top 2-gram",
        "a b c d e f g h i j": "mean word length",
    }
    for text, reason in junk.items():
        assert reason in quality_reason(text, QualityRules()), (text, quality_reason(text))
    assert quality_reason("Natalia sold clips to 48 of her friends in April, and then half as many in May.") == ""

    stage = CurationStage(pii=True, quality=QualityRules(), language_backend="script")
    rows = [{"text": t} for t in junk] + [
        {"question": "How many apples did the farmer sell at the market? Mail bob@corp.com", "answer": "He sold 12. #### 12"}]
    batch = {"uid": np.arange(len(rows)), "source": np.array(["s"] * len(rows)), "line": np.arange(1, len(rows) + 1),
             "payload": np.array([json.dumps(r).encode() for r in rows], dtype=object)}
    out = stage(batch)
    rejected = [p for p in out["payload"] if p.startswith(REJECTED)]
    assert len(rejected) == len(junk)
    for p, reason in zip(rejected, junk.values()):  # quarantined under field <quality> with the rule that failed
        field, why = p[len(REJECTED):].decode().split("\x00")
        assert field == "<quality>" and reason in why
    good = json.loads(out["payload"][-1])
    assert "<EMAIL>" in good["question"] and json.loads(out["pii"][-1])["email"] == 1 and out["lang"][-1] == "latin"


def test_language_mix_after_temperature_sampling_is_within_two_points():
    rng = random.Random(1)
    texts = ([" ".join(rng.choices(EN, k=12)) for _ in range(6000)] + [" ".join(rng.choices(RU, k=12)) for _ in range(1500)]
             + ["".join(rng.choices(ZH, k=30)) for _ in range(500)])
    stage = CurationStage(pii=False, quality=None, language_backend="script")
    langs = [stage.row(json.dumps({"text": t}).encode())[1] for t in texts]
    counts = {g: langs.count(g) for g in set(langs)}
    assert counts == {"latin": 6000, "cyrillic": 1500, "han": 500}  # language ID is right on every row
    alpha = 0.3
    rates = sampling_rates(counts, alpha)
    requested = {g: n ** alpha / sum(m ** alpha for m in counts.values()) for g, n in counts.items()}
    out: dict[str, int] = {}
    for k, g in enumerate(langs):
        out[g] = out.get(g, 0) + keep_copies(rates[g], row_fraction(str(k), "sample-0"))
    total = sum(out.values())
    for g in counts:
        assert abs(out[g] / total - requested[g]) <= 0.02, (g, out[g] / total, requested[g])
    assert out["han"] > counts["han"]  # the rare language is up-sampled
    assert abs(total - len(texts)) / len(texts) < 0.03  # size kept (by default) while the mix changes
