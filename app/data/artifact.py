"""The dataset artifact: a folder any training job can load, identified by the hash of its content.

Layout::

    <dir>/manifest.json        id, version, record_type, counts, token stats, splits, source file hashes
    <dir>/train/part-00000.parquet …   rows of the record type (see below)
    <dir>/validation/part-….parquet    optional
    <dir>/quarantine.jsonl     rejected input rows: source file, line, field, reason
    <dir>/length_hist.png      token-length histogram

Record types (columns): ``sft`` (packed, padding-free: input_ids, labels, position_ids list<int32>, seq_len int32);
``preference`` (prompt, chosen, rejected, chosen_/rejected_input_ids, chosen_/rejected_labels);
``prompt`` (prompt, messages JSON, prompt_input_ids, reference).

The id is ``<record_type>-<sha256[:16]>`` over the shard bytes and the record-relevant manifest fields, so the
same input and settings always give the same id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.data.errors import DataError

FORMAT = "rayalign-dataset/1"
RECORD_TYPES = ("sft", "preference", "prompt")
_I32 = pa.list_(pa.int32())
SCHEMAS: dict[str, pa.Schema] = {
    "sft": pa.schema([("input_ids", _I32), ("labels", _I32), ("position_ids", _I32), ("seq_len", pa.int32())]),
    "preference": pa.schema(
        [
            ("prompt", pa.string()),
            ("chosen", pa.string()),
            ("rejected", pa.string()),
            ("chosen_input_ids", _I32),
            ("chosen_labels", _I32),
            ("rejected_input_ids", _I32),
            ("rejected_labels", _I32),
        ]
    ),
    "prompt": pa.schema(
        [("prompt", pa.string()), ("messages", pa.string()), ("prompt_input_ids", _I32), ("reference", pa.string())]
    ),
}
REQUIRED_MANIFEST_KEYS = ("id", "version", "format", "record_type", "splits")


@dataclass(frozen=True)
class DatasetArtifact:
    """A dataset artifact on disk: ``.path``, ``.id``, ``.manifest`` and the Parquet files of each split."""

    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def record_type(self) -> str:
        return self.manifest["record_type"]

    @property
    def splits(self) -> dict[str, int]:
        return dict(self.manifest["splits"])

    def split_path(self, split: str = "train") -> Path:
        """The folder of a split's Parquet shards (``ray.data.read_parquet`` / ``pq.read_table`` accept it)."""
        if split not in self.manifest["splits"]:
            raise DataError(f"{self.path}: no split {split!r} (have: {', '.join(self.manifest['splits'])})")
        return self.path / split

    def read_table(self, split: str = "train") -> pa.Table:
        """The whole split as one Arrow table (small data; training reads shards through Ray Data instead)."""
        files = sorted(self.split_path(split).glob("*.parquet"))
        return pa.concat_tables([pq.read_table(f) for f in files]) if files else SCHEMAS[self.record_type].empty_table()


def load_artifact(path: str | Path) -> DatasetArtifact:
    """Open a dataset artifact folder, checking the manifest and that each split's shards exist."""
    root = Path(path).expanduser()
    mf = root / "manifest.json"
    if not mf.is_file():
        raise DataError(f"{root}: not a dataset artifact (no manifest.json)")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{mf}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise DataError(f"{mf}: missing keys {missing}")
    if manifest["record_type"] not in RECORD_TYPES:
        raise DataError(f"{mf}: unknown record_type {manifest['record_type']!r} (known: {', '.join(RECORD_TYPES)})")
    for split in manifest["splits"]:
        if not (root / split).is_dir():
            raise DataError(f"{root}: split folder {split!r} listed in the manifest is missing")
    return DatasetArtifact(root.resolve(), manifest)


def _to_table(record_type: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = SCHEMAS[record_type]
    return pa.Table.from_pylist([{f.name: r[f.name] for f in schema} for r in rows], schema=schema)


def write_artifact(
    out_dir: str | Path,
    record_type: str,
    splits: dict[str, list[dict[str, Any]]],
    manifest: dict[str, Any],
    rows_per_shard: int = 50_000,
    attachments: dict[str, str | Path] | None = None,
) -> DatasetArtifact:
    """Write split rows as Parquet shards plus ``manifest.json``; the id hashes the shards and record settings.

    ``manifest`` holds the run's counts and provenance; this adds id, version, format, record_type and splits.
    ``attachments`` (name -> file) are copied in beside the manifest (quarantine.jsonl, length_hist.png, ...).
    Writing is atomic per folder: into ``<out>.tmp`` first, then renamed over ``out_dir``.
    """
    import shutil

    if record_type not in RECORD_TYPES:
        raise DataError(f"unknown record_type {record_type!r}")
    out = Path(out_dir).expanduser()
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    digest = hashlib.sha256()
    for split, rows in splits.items():
        (tmp / split).mkdir()
        for k, start in enumerate(range(0, max(len(rows), 1), rows_per_shard)):
            table = _to_table(record_type, rows[start : start + rows_per_shard])
            f = tmp / split / f"part-{k:05d}.parquet"
            pq.write_table(table, f, compression="zstd")
            digest.update(f"{split}/{f.name}:".encode())
            digest.update(hashlib.sha256(_canonical_table_bytes(table)).digest())
    settings = {k: manifest.get(k) for k in ("model_source", "max_length", "source_files") if k in manifest}
    digest.update(json.dumps([record_type, settings], sort_keys=True).encode())
    full = dict(manifest)
    full.update(
        id=f"{record_type}-{digest.hexdigest()[:16]}",
        content_sha256=digest.hexdigest(),
        version=int(manifest.get("version", 1)),
        format=FORMAT,
        record_type=record_type,
        splits={split: len(rows) for split, rows in splits.items()},
    )
    (tmp / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True), encoding="utf-8")
    for name, src in (attachments or {}).items():
        shutil.copyfile(src, tmp / name)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return load_artifact(out)


def _canonical_table_bytes(table: pa.Table) -> bytes:
    """Bytes that depend only on the table's values (Parquet file bytes may differ across library versions)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
