"""IngestConfig: raw files → validated, deduplicated, contamination-checked, tokenized (packed) dataset artifact."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from app.config.base import StrictModel
from app.config.common import ModelSpec, RaySpec, TrackingSpec


class SourceSpec(StrictModel):
    """One input: a file, a glob, a saved HF dataset folder, or an s3:// URI (fsspec)."""

    path: str = Field(..., description="file path, glob (data/*.jsonl.gz), HF `save_to_disk` folder, or s3://bucket/key")
    reader: Literal["auto", "jsonl", "parquet", "hf"] = Field(
        "auto", description="file reader; auto picks from the extension (.jsonl/.json/.gz, .parquet, folder → hf)"
    )
    input_format: Literal["auto", "gsm8k", "hh_rlhf", "sft", "chat", "preference", "kto", "openai_dpo", "prompt"] = Field(
        "auto", description="record layout of the rows (auto: detected per row from its keys; see app/data/records.py: "
        "TRL prompt/chosen/rejected and conversational, KTO prompt/completion/label, OpenAI DPO JSONL, messages, …)"
    )


class DedupSpec(StrictModel):
    """Exact and MinHash near-duplicate removal."""

    exact: bool = Field(True, description="drop exact duplicates (SHA-256 of the canonical normalized record)")
    near: bool = Field(True, description="drop near-duplicates found by MinHash LSH + Jaccard verification")
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard similarity at or above which two rows are near-duplicates")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations (signature length)")
    shingle: Literal["char", "word"] = Field("char", description="shingle unit: character or word k-grams")
    shingle_size: int = Field(5, ge=1, le=32, description="k of the k-gram shingles")
    seed: int = Field(1, description="seed of the MinHash hash functions")


class ContaminationSpec(StrictModel):
    """Benchmark n-gram overlap scan."""

    benchmarks: list[str] = Field(
        default_factory=list, description="benchmark JSONL files (globs ok) whose items must not leak into training data"
    )
    fields: list[str] = Field(
        default_factory=lambda: ["question", "answer"], description="benchmark row fields whose text is indexed"
    )
    ngram: int = Field(13, ge=3, le=64, description="word n-gram length of the overlap test")
    min_hits: int = Field(1, ge=1, description="shared n-grams with one benchmark item needed to flag a row")
    policy: Literal["flag", "drop"] = Field("drop", description="flag: keep and report; drop: remove contaminated rows")


class QualitySpec(StrictModel):
    """Gopher/C4-style heuristic quality rules (app.data.curation.QualityRules); a failing row is quarantined."""

    min_words: int = Field(3, ge=0, description="fewer words → rejected")
    max_words: int = Field(100_000, ge=1, description="more words → rejected")
    min_mean_word_length: float = Field(2.0, ge=0, description="mean word length below → rejected")
    max_mean_word_length: float = Field(12.0, gt=0, description="mean word length above → rejected")
    max_symbol_ratio: float = Field(0.1, ge=0, description="('#' + '...') per word above → rejected")
    min_alpha_word_fraction: float = Field(0.5, ge=0, le=1, description="fraction of words with a letter below → rejected")
    max_duplicate_line_fraction: float = Field(0.3, ge=0, le=1, description="repeated lines fraction above → rejected")
    max_top_2gram_fraction: float = Field(0.3, ge=0, le=1, description="characters in the top repeated word 2-gram above → rejected")
    reject_lorem_ipsum: bool = Field(True, description="reject rows containing 'lorem ipsum'")
    reject_curly_braces: bool = Field(False, description="reject rows containing '{' (C4's code filter)")


class CurationSpec(StrictModel):
    """Curation operators (app/data/curation.py), all off by default."""

    pii: bool = Field(False, description="replace e-mails, phones, IPs, card-like numbers, API-key-like strings by typed placeholders")
    quality: QualitySpec | None = Field(None, description="heuristic quality rules (null: off)")
    language_id: Literal["off", "auto", "py3langid", "script"] = Field(
        "off", description="language ID: py3langid (packaged model, if installed), script (dominant Unicode script), auto")
    languages: list[str] = Field(default_factory=list, description="keep only these language labels ([]: all)")
    language_alpha: float | None = Field(None, ge=0, le=1, description="temperature sampling p(lang) ∝ n^alpha (null: off)")
    source_weights: dict[str, float] = Field(default_factory=dict, description="mixing weight per source file glob")
    sample_seed: int = Field(0, description="seed of the per-row sampling hash")


class LimitsSpec(StrictModel):
    """Bounds on what one input may cost (app.data.readers.ReadLimits); a breach is quarantined with one reason."""

    max_line_bytes: int = Field(8 << 20, ge=1024, description="a longer JSONL line is skipped unread and quarantined")
    max_expansion: float = Field(64.0, gt=1, description="refuse a gzip stream / Parquet row group that inflates more than this factor")
    max_row_group_bytes: int = Field(512 << 20, ge=1024, description="refuse a Parquet row group larger than this uncompressed")
    rows_per_block: int = Field(4096, ge=16, description="rows per block streamed out of one file")


class IngestConfig(StrictModel):
    """Raw files → dataset artifact (see README 'Data')."""

    name: str = Field("dataset", description="dataset name (artifact folder name under output_dir)")
    record_type: Literal["sft", "preference", "unpaired", "prompt"] = Field(
        "sft", description="what the artifact's rows are ('unpaired': KTO rows with a desirable/undesirable label)")
    sources: list[SourceSpec] = Field(default_factory=list, description="input files; at least one")
    output_dir: str = Field("", description="parent folder of the artifact ('' → <rayalign home>/datasets)")
    model: ModelSpec = Field(default_factory=ModelSpec, description="base model whose tokenizer and chat template are used")
    max_length: int = Field(512, ge=16, le=131072, description="max tokens per example (and per packed window for sft)")
    length_policy: Literal["truncate", "reject", "drop_turns"] = Field(
        "truncate", description="over-long examples: 'truncate' the tail, 'reject' (quarantine), or 'drop_turns': drop "
        "the oldest whole turns of the conversation until it fits (the last user turn and the response are never cut; "
        "quarantined if even they do not fit) — for multi-turn preference data such as HH-RLHF")
    pack: bool = Field(True, description="sft only: pack whole examples into max_length windows (app.core.packing.pack_sequences)")
    pack_block_rows: int = Field(4096, ge=16, description="sft packing runs per block of this many examples inside Ray "
                                 "Data (memory bounded by the block; see benchmarks/packing.py for the efficiency cost)")
    validation_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of kept rows held out as 'validation'")
    seed: int = Field(0, description="seed of the train/validation split")
    split_by: Literal["record", "prompt"] = Field(
        "record", description="what the train/validation split hashes: the whole record, or only its prompt (the "
        "conversation before the answer) — then the SFT, preference and prompt artifacts of one source (e.g. HH-RLHF "
        "for SFT -> reward model -> PPO) hold out the same conversations, and every reply to one prompt stays together")
    dedup: DedupSpec = Field(default_factory=DedupSpec, description="exact + near-duplicate removal")
    contamination: ContaminationSpec = Field(default_factory=ContaminationSpec, description="benchmark contamination scan")
    curation: CurationSpec = Field(default_factory=CurationSpec, description="quality, PII, language ID, sampling")
    limits: LimitsSpec = Field(default_factory=LimitsSpec, description="bad-input bounds: line length, gzip/Parquet bombs")
    ray: RaySpec = Field(default_factory=RaySpec, description="Ray cluster to run on")
    tracking: TrackingSpec = Field(default_factory=lambda: TrackingSpec(enabled=False), description="MLflow logging")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", v):
            raise ValueError("use letters, digits, '.', '_' or '-' (no path separators)")
        return v
