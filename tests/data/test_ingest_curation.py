"""Curation and bad input through the real pipeline on Ray: junk and refused files land in quarantine with their
one-line reason, PII is replaced before tokenization and counted, languages are sampled to the requested mix."""

from __future__ import annotations

import gzip
import json
import random

import pytest

pytestmark = pytest.mark.ray

EN = "the farmer sold apples at the market and bought new seeds for spring".split()
RU = "фермер продал яблоки на рынке и купил новые семена для весны".split()


def test_curated_ingest_quarantines_scrubs_and_samples(ray_local, tmp_path):
    from app.config.ingest import IngestConfig
    from app.data.pipeline import run_ingest

    rng = random.Random(0)
    rows = [{"question": " ".join(rng.sample(EN, k=10)) + f" {i}?", "answer": f"It is {i}. #### {i}"} for i in range(120)]
    rows += [{"question": " ".join(rng.sample(RU, k=10)) + f" {i}?", "answer": f"Ответ {i}. #### {i}"} for i in range(40)]
    rows[3]["question"] += " Write to ann.lee@example.com or call +1 415-555-0134."
    for i in (5, 7, 9, 11, 13):  # more e-mails: latin rows are down-sampled (rate 2/3), so one row alone may be sampled out
        rows[i]["question"] += " Write to ann.lee@example.com."
    junk = [{"question": "Lorem ipsum dolor sit amet, consectetur adipiscing elit?", "answer": "Lorem ipsum. #### 0"},
            {"question": "### ### ### ### ###", "answer": "### #### 1"}]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows + junk) + "\n")
    (tmp_path / "in" / "b.jsonl").write_bytes(b'{"question": "' + b"x" * 300_000 + b'", "answer": "1"}\n')
    with gzip.open(tmp_path / "in" / "c.jsonl.gz", "wb") as fh:
        fh.write((json.dumps({"question": "a" * 500, "answer": "1"}) + "\n").encode() * 20_000)
    cfg = IngestConfig(
        name="cur", record_type="sft", model={"source": "tiny:llama"}, max_length=256,
        sources=[{"path": str(tmp_path / "in" / "*.jsonl*")}], dedup={"near": False},
        curation={"pii": True, "quality": {}, "language_id": "script", "language_alpha": 0.0},
        limits={"max_line_bytes": 100_000, "max_expansion": 20},
    )
    art = run_ingest(cfg, out_dir=tmp_path / "out")
    m = art.manifest
    quarantine = [json.loads(l) for l in open(art.path / "quarantine.jsonl")]
    reasons = {(q["source"].rsplit("/", 1)[-1], q["field"]): q["reason"] for q in quarantine}
    assert "lorem ipsum" in reasons[("a.jsonl", "<quality>")] or "symbol" in reasons[("a.jsonl", "<quality>")]
    assert sum(1 for q in quarantine if q["field"] == "<quality>" and q["source"].endswith("a.jsonl")) == 2
    assert reasons[("b.jsonl", "<line>")] == "longer than max_line_bytes 100000"
    assert "gzip bomb" in reasons[("c.jsonl.gz", "<file>")] and "\n" not in reasons[("c.jsonl.gz", "<file>")]
    c_rows = next(f["rows"] for f in m["source_files"] if f["path"].endswith("c.jsonl.gz"))
    assert c_rows < 20_000 // 5  # the bomb stopped early: only rows within the expansion budget were read
    assert m["rows_read"] == m["rows_accepted"] + m["rows_rejected"]
    assert m["pii_replaced"]["email"] == 6 and m["pii_replaced"]["phone"] == 1
    assert m["sampling"]["languages_before"] == {"latin": 120, "cyrillic": 40}
    from app.models.loader import load_tokenizer, resolve_model

    tok = load_tokenizer(str(resolve_model(cfg.model).path))
    text = "".join(tok.decode(r["input_ids"]) for r in art.read_table().to_pylist())
    assert "<EMAIL>" in text and "example.com" not in text
    out = m["rows_after_sampling"]  # alpha 0: both languages equally weighted, up- and down-sampled to 50/50
    assert abs(text.count("Ответ") / out - 0.5) <= 0.08
