"""Curation operators for the ingest pipeline: heuristic quality filters, PII scrubbing, language ID, and sampling.

Each is a pure function over one text (or one batch); ``CurationStage`` runs them as a Ray Data ``map_batches``
operator on the raw rows before validation, so a row that fails a quality rule is quarantined with its reason
(``field`` = ``<quality>``) and PII never reaches the tokenizer.

- Quality (Gopher: Rae et al. 2021, app. A; C4: Raffel et al. 2020 §2.2): word count bounds, mean word length,
  symbol-to-word ratio (runs of ``#``, ``...``), fraction of words with an alphabetic character, repeated-line and top
  word-2-gram character fractions, "lorem ipsum" and curly-brace code markers. Thresholds are ``QualityRules``
  fields; the reason names the first rule that failed and its measured value.
- PII: e-mail addresses, phone numbers, IPv4 addresses, credit-card-like numbers (13–19 digits passing the Luhn
  check) and API-key-like strings (known prefixes such as ``sk-``, ``AKIA``, ``ghp_``, ``xox[bp]-``, and long
  mixed-case/digit tokens) become typed placeholders ``<EMAIL>``, ``<PHONE>``, ``<IP>``, ``<CREDIT_CARD>``,
  ``<API_KEY>``; counts per type are returned.
- Language ID: ``py3langid`` (its model ships inside the wheel) when installed; else ``script``: the dominant
  Unicode script of the letters (Latin → ``en``-family label ``latin``, Cyrillic, Han, Arabic, …), enough to
  separate languages of different scripts, not languages that share one.
- Sampling: per-source mixing weights and temperature-balanced language sampling p(lang) ∝ n_lang^α (α = 1 keeps
  the natural mix, α → 0 balances it), applied by a deterministic per-row hash (``sampling_rates``, ``keep_copies``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP>", "credit_card": "<CREDIT_CARD>",
                "api_key": "<API_KEY>"}
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_API_KEY = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}"
                      r"|AIza[0-9A-Za-z_-]{35}|(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[A-Z])"
                      r"[A-Za-z0-9_-]{32,})\b")
_IP = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}(?!\w|\.\d)")


def _luhn(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


def scrub_pii(text: str) -> tuple[str, dict[str, int]]:
    """``text`` with PII replaced by typed placeholders, and the count of each type replaced.

    Order matters: e-mails and API keys first (they contain digits and dots), then IPs, Luhn-valid card numbers,
    then phone numbers.
    """
    counts = dict.fromkeys(PLACEHOLDERS, 0)

    def sub(kind: str, pattern: re.Pattern, s: str, check=None) -> str:
        def repl(m: re.Match) -> str:
            if check is not None and not check(m.group()):
                return m.group()
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return pattern.sub(repl, s)

    out = sub("email", _EMAIL, text)
    out = sub("api_key", _API_KEY, out)
    out = sub("ip", _IP, out)
    out = sub("credit_card", _CARD, out, lambda s: _luhn(re.sub(r"\D", "", s)))
    out = sub("phone", _PHONE, out, lambda s: 7 <= len(re.sub(r"\D", "", s)) <= 15)
    return out, counts


@dataclass(frozen=True)
class QualityRules:
    """Gopher/C4-style thresholds (defaults suit short instruction data; Gopher's web defaults are 50–100,000
    words, mean word length 3–10, symbol ratio 0.1, ≥ 80 % words with a letter, duplicate-line fraction 0.3)."""

    min_words: int = 3
    max_words: int = 100_000
    min_mean_word_length: float = 2.0
    max_mean_word_length: float = 12.0
    max_symbol_ratio: float = 0.1
    min_alpha_word_fraction: float = 0.5
    max_duplicate_line_fraction: float = 0.3
    max_top_2gram_fraction: float = 0.3
    reject_lorem_ipsum: bool = True
    reject_curly_braces: bool = False


def quality_reason(text: str, rules: QualityRules = QualityRules()) -> str:
    """'' when ``text`` passes every rule; else the first failed rule with its measured value."""
    words = text.split()
    n = len(words)
    if n < rules.min_words:
        return f"too few words ({n} < {rules.min_words})"
    if n > rules.max_words:
        return f"too many words ({n} > {rules.max_words})"
    mean = sum(len(w) for w in words) / n
    if not rules.min_mean_word_length <= mean <= rules.max_mean_word_length:
        return f"mean word length {mean:.1f} outside {rules.min_mean_word_length}..{rules.max_mean_word_length}"
    symbols = len(re.findall(r"#+", text)) + text.count("...") + text.count("…")  # a run of '#' is one symbol
    if symbols / n > rules.max_symbol_ratio:
        return f"symbol-to-word ratio {symbols / n:.2f} > {rules.max_symbol_ratio}"
    alpha = sum(1 for w in words if any(c.isalpha() for c in w)) / n
    if alpha < rules.min_alpha_word_fraction:
        return f"words with a letter {alpha:.2f} < {rules.min_alpha_word_fraction}"
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    if len(lines) > 1:
        dup = 1 - len(set(lines)) / len(lines)
        if dup > rules.max_duplicate_line_fraction:
            return f"duplicate-line fraction {dup:.2f} > {rules.max_duplicate_line_fraction}"
    if n >= 6:
        grams: dict[tuple[str, str], int] = {}
        for a, b in zip(words, words[1:]):
            grams[(a.lower(), b.lower())] = grams.get((a.lower(), b.lower()), 0) + 1
        (a, b), c = max(grams.items(), key=lambda kv: kv[1])
        frac = c * (len(a) + len(b)) / max(1, sum(len(w) for w in words))
        if c > 1 and frac > rules.max_top_2gram_fraction:
            return f"top 2-gram '{a} {b}' covers {frac:.2f} of the characters > {rules.max_top_2gram_fraction}"
    low = text.lower()
    if rules.reject_lorem_ipsum and "lorem ipsum" in low:
        return "contains 'lorem ipsum'"
    if rules.reject_curly_braces and "{" in text:
        return "contains a curly brace (code)"
    return ""


_SCRIPTS = (("LATIN", "latin"), ("CYRILLIC", "cyrillic"), ("CJK", "han"), ("HIRAGANA", "japanese"),
            ("KATAKANA", "japanese"), ("HANGUL", "hangul"), ("ARABIC", "arabic"), ("GREEK", "greek"),
            ("HEBREW", "hebrew"), ("DEVANAGARI", "devanagari"), ("THAI", "thai"))


def script_of(text: str) -> str:
    """The dominant Unicode script of the letters of ``text`` ('' when it has none)."""
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            label = next((lab for key, lab in _SCRIPTS if name.startswith(key)), "other")
            counts[label] = counts.get(label, 0) + 1
    return max(counts, key=counts.get) if counts else ""


def detect_language(text: str, backend: str = "auto") -> str:
    """A language label: ``py3langid``'s ISO 639-1 code, or the dominant script (``script`` backend)."""
    if backend in ("auto", "py3langid"):
        try:
            import py3langid
        except ImportError:
            if backend == "py3langid":
                raise ImportError("language_id.backend py3langid: package py3langid is not installed") from None
        else:
            return py3langid.classify(text)[0]
    return script_of(text)


def row_fraction(key: str, salt: str) -> float:
    """A deterministic uniform number in [0, 1) from a row key (sampling decisions are reproducible)."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "little") / 2**64


def sampling_rates(counts: dict[str, int], alpha: float, weights: dict[str, float] | None = None,
                   total: int | None = None) -> dict[str, float]:
    """Expected copies per row of each group so the output mix is p(g) ∝ weight_g · n_g^α, with ``total`` rows out.

    ``total`` defaults to the input size (the mix changes, the size does not); a rate > 1 means up-sampling.
    """
    weights = weights or {}
    raw = {g: weights.get(g, 1.0) * (n ** alpha) for g, n in counts.items() if n > 0}
    z = sum(raw.values())
    out_rows = sum(counts.values()) if total is None else total
    return {g: (raw[g] / z) * out_rows / counts[g] for g in raw}


def keep_copies(rate: float, u: float) -> int:
    """Copies of a row at expected ``rate`` with its uniform draw ``u``: floor(rate) + 1 with probability frac(rate)."""
    whole = int(rate)
    return whole + (1 if u < rate - whole else 0)


REJECTED = b"\x00rejected\x00"  # payload prefix: RowProcessor quarantines the row with the field and reason after it


def _strings(obj, fn):
    """``obj`` (parsed JSON) with ``fn`` applied to every string inside it."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, list):
        return [_strings(x, fn) for x in obj]
    if isinstance(obj, dict):
        return {k: _strings(v, fn) for k, v in obj.items()}
    return obj


class CurationStage:
    """Ray Data ``map_batches`` callable over raw rows {uid, source, line, payload}: PII scrubbing, quality rules and
    language ID on the text of each JSON row. Adds ``lang`` and ``pii`` (JSON counts) columns; a row that fails a
    quality rule (or a language not in ``languages``) gets a ``REJECTED`` payload naming the rule, so the validation
    stage quarantines it with that reason. Rows that are not JSON pass through untouched (validation rejects them).
    """

    def __init__(self, pii: bool, quality: QualityRules | None, language_backend: str | None,
                 languages: list[str] | None = None):
        self.pii, self.quality, self.backend, self.languages = pii, quality, language_backend, set(languages or [])

    def row(self, payload: bytes) -> tuple[bytes, str, dict[str, int]]:
        import json

        counts = dict.fromkeys(PLACEHOLDERS, 0)
        try:
            record = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return payload, "", counts
        pieces: list[str] = []
        _strings(record, lambda s: pieces.append(s) or s)
        text = "\n".join(pieces)  # quality and language are judged on the text as it came in
        if self.pii:
            def scrub(s: str) -> str:
                out, c = scrub_pii(s)
                for k, v in c.items():
                    counts[k] += v
                return out

            record = _strings(record, scrub)
        lang = detect_language(text, self.backend) if self.backend else ""
        reason = quality_reason(text, self.quality) if self.quality is not None else ""
        if not reason and self.languages and lang not in self.languages:
            reason = f"language {lang or 'unknown'!r} not in {sorted(self.languages)}"
            return REJECTED + b"<language>\x00" + reason.encode(), lang, counts
        if reason:
            return REJECTED + b"<quality>\x00" + reason.encode(), lang, counts
        return json.dumps(record, ensure_ascii=False).encode("utf-8") if self.pii else payload, lang, counts

    def __call__(self, batch: dict) -> dict:
        import json

        import numpy as np

        payloads, langs, pii = [], [], []
        for p in batch["payload"]:
            out, lang, counts = self.row(bytes(p))
            payloads.append(out), langs.append(lang), pii.append(json.dumps(counts))
        return {"uid": batch["uid"], "source": batch["source"], "line": batch["line"],
                "payload": np.array(payloads, dtype=object), "lang": np.array(langs), "pii": np.array(pii)}
