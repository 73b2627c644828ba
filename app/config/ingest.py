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
    validation_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of kept rows held out as 'validation'")
    seed: int = Field(0, description="seed of the train/validation split")
    dedup: DedupSpec = Field(default_factory=DedupSpec, description="exact + near-duplicate removal")
    contamination: ContaminationSpec = Field(default_factory=ContaminationSpec, description="benchmark contamination scan")
    ray: RaySpec = Field(default_factory=RaySpec, description="Ray cluster to run on")
    tracking: TrackingSpec = Field(default_factory=lambda: TrackingSpec(enabled=False), description="MLflow logging")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", v):
            raise ValueError("use letters, digits, '.', '_' or '-' (no path separators)")
        return v
