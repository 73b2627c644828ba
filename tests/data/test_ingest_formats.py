"""The input formats users bring, through tokenization and the real ingest pipeline: KTO's unpaired rows."""

from __future__ import annotations

import json

import pytest

from app.config.ingest import IngestConfig
from app.config.loader import load_config
from app.config.paths import REPO_ROOT
from app.core.masking import IGNORE_INDEX
from app.data.tokenization import ChatTokenizer


@pytest.fixture
def chat(tiny_model_dir):
    from transformers import AutoTokenizer

    return ChatTokenizer(AutoTokenizer.from_pretrained(tiny_model_dir), max_length=256)


def test_unpaired_tokenization_trains_only_the_completion(chat):
    prompt = [{"role": "user", "content": "Capital of France?"}]
    out = chat.unpaired({"prompt_messages": prompt, "completion": "Paris.", "label": False})
    assert out["label"] is False and out["completion"] == "Paris."
    ids, labels = out["input_ids"], out["labels"]
    trained = [i for i, y in enumerate(labels) if y != IGNORE_INDEX]
    assert trained == list(range(trained[0], trained[-1] + 1))  # one block: the completion + end-of-turn
    assert [labels[i] for i in trained] == [ids[i] for i in trained]
    # everything before the first label is the rendered prompt, so prompt i + completion j is a valid KTO KL pair
    prompt_ids = chat.tok(out["prompt"], add_special_tokens=False)["input_ids"]
    assert ids[: trained[0]] == prompt_ids
    # ... and the same completion under the preference tokenizer gets the same tokens and labels
    pair = chat.preference({"prompt_messages": prompt, "chosen": "Paris.", "rejected": "Lyon."})
    assert pair["chosen_input_ids"] == ids and pair["chosen_labels"] == labels


@pytest.mark.ray
def test_kto_ingest_quarantines_bad_rows_with_line_and_field(ray_local, tmp_path):
    from app.data.pipeline import run_ingest

    cfg = load_config(REPO_ROOT / "configs/tiny/ingest_kto.yaml", IngestConfig, [])
    cfg = cfg.model_copy(update={"sources": [s.model_copy(update={"path": str(REPO_ROOT / s.path)}) for s in cfg.sources]})
    art = run_ingest(cfg, out_dir=tmp_path)
    m = art.manifest
    assert (m["rows_read"], m["rows_rejected"], m["rows_kept"]) == (9, 5, 4) and art.id.startswith("unpaired-")
    quarantine = [json.loads(line) for line in open(art.path / "quarantine.jsonl")]
    assert [(q["line"], q["field"]) for q in sorted(quarantine, key=lambda q: q["line"])] == [
        (5, "label"), (6, "completion"), (7, "label"), (8, "completion"), (9, "prompt[0].role")]
    assert all(q["source"].endswith("kto_mixed.jsonl") and q["reason"] for q in quarantine)
    rows = art.read_table().to_pylist()
    assert [r["label"] for r in rows] == [True, False, True, False]
    assert [r["completion"] for r in rows] == [" blue.", " green.", "Paris.", "Look it up."]
    assert all(any(y != IGNORE_INDEX for y in r["labels"]) and len(r["labels"]) == len(r["input_ids"]) for r in rows)
