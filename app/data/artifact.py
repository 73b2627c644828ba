"""The dataset artifact: a folder any training job can load, identified by the hash of its content.

Versions: an artifact is immutable once written. ``write_artifact(<root>/<name>, ...)`` writes a new version folder
``<root>/<name>/v<N>`` (N = 1 + the highest existing) and never deletes or rewrites one; if a version with the same
content id already exists it is returned as is (same input + settings → same id, nothing rewritten). ``load_artifact``
accepts a version folder, ``<name>`` (resolves to the newest version), ``<name>/v<N>`` or ``<name>@<id>``; a legacy
flat folder (manifest.json at the top, written before versions existed) still loads by its path.

Layout of one version::

    <dir>/manifest.json        id, version, record_type, counts, token stats, splits, source file hashes
    <dir>/train/part-00000.parquet …   rows of the record type (see below)
    <dir>/validation/part-….parquet    optional
    <dir>/quarantine.jsonl     rejected input rows: source file, line, field, reason
    <dir>/length_hist.png      token-length histogram

Record types (columns): ``sft`` (packed, padding-free: input_ids, labels, position_ids list<int32>, seq_len int32);
``preference`` (prompt, chosen, rejected, chosen_/rejected_input_ids, chosen_/rejected_labels);
``unpaired`` (KTO rows: prompt, completion, label bool, input_ids, labels; -100 on the prompt);
``prompt`` (prompt, messages JSON, prompt_input_ids, reference).

The id is ``<record_type>-<sha256[:16]>`` over the shard bytes and the record-relevant manifest fields, so the
same input and settings always give the same id.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.data.errors import DataError

FORMAT = "rayalign-dataset/1"
RECORD_TYPES = ("sft", "preference", "unpaired", "prompt")
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
    "unpaired": pa.schema(
        [("prompt", pa.string()), ("completion", pa.string()), ("label", pa.bool_()), ("input_ids", _I32), ("labels", _I32)]
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


_VERSION = re.compile(r"v(\d+)")


def list_versions(name_dir: str | Path) -> list[Path]:
    """The complete version folders ``v<N>`` (with a manifest.json) of a dataset name folder, oldest first."""
    root = Path(name_dir).expanduser()
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), d) for d in root.iterdir()
             if (m := _VERSION.fullmatch(d.name)) and d.is_dir() and (d / "manifest.json").is_file()]
    return [d for _, d in sorted(found)]


def resolve_artifact_dir(path: str | Path) -> Path:
    """The version folder a reference names: a version folder itself, ``<name>`` (newest version), or ``<name>@<id>``.

    Raises DataError naming the path when nothing matches.
    """
    text = str(path)
    root, _, wanted = text.rpartition("@") if "@" in Path(text).name else (text, "", "")
    folder = Path(root).expanduser()
    if wanted:
        for d in list_versions(folder):
            if json.loads((d / "manifest.json").read_text(encoding="utf-8")).get("id") == wanted:
                return d
        raise DataError(f"{folder}: no version with id {wanted!r} (have: "
                        f"{', '.join(d.name for d in list_versions(folder)) or 'none'})")
    if (folder / "manifest.json").is_file():
        return folder
    versions = list_versions(folder)
    return versions[-1] if versions else folder


def load_artifact(path: str | Path) -> DatasetArtifact:
    """Open a dataset artifact (see ``resolve_artifact_dir``), checking the manifest and each split's shards."""
    root = resolve_artifact_dir(path)
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
    """Write split rows as a new immutable version ``<out_dir>/v<N>``: Parquet shards plus ``manifest.json``.

    ``manifest`` holds the run's counts and provenance; this adds id, version, format, record_type and splits.
    ``attachments`` (name -> file) are copied in beside the manifest (quarantine.jsonl, length_hist.png, ...).
    The id hashes the shards and record settings; when a version with that id already exists under ``out_dir`` it is
    returned untouched. Otherwise the version is written into a private temporary folder and renamed to the next free
    ``v<N>`` (atomic; a concurrent writer that took N first makes this one take N + 1). No version is ever deleted.
    """
    import shutil

    if record_type not in RECORD_TYPES:
        raise DataError(f"unknown record_type {record_type!r}")
    out = Path(out_dir).expanduser()
    tmp = staging_dir(out)
    try:
        digest = hashlib.sha256()
        for split, rows in splits.items():
            (tmp / split).mkdir()
            for k, start in enumerate(range(0, max(len(rows), 1), rows_per_shard)):
                table = _to_table(record_type, rows[start : start + rows_per_shard])
                f = tmp / split / f"part-{k:05d}.parquet"
                pq.write_table(table, f, compression="zstd")
                digest.update(f"{split}/{f.name}:".encode())
                digest.update(hashlib.sha256(_canonical_table_bytes(table)).digest())
        for name, src in (attachments or {}).items():
            shutil.copyfile(src, tmp / name)
        counts = {split: len(rows) for split, rows in splits.items()}
        return publish_version(out, tmp, record_type, manifest, digest.hexdigest(), counts)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def staging_dir(out_dir: str | Path) -> Path:
    """A private temporary folder inside ``out_dir`` (same filesystem, so publishing is one rename)."""
    import tempfile

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".tmp-", dir=out))


def publish_version(out_dir: str | Path, staged: Path, record_type: str, manifest: dict[str, Any],
                    content_digest: str, splits: dict[str, int]) -> DatasetArtifact:
    """Publish ``staged`` (from ``staging_dir``: split folders + attachments) as the next ``v<N>`` of ``out_dir``.

    The id hashes ``content_digest`` (the rows) and the record settings of ``manifest``; if a version with that id
    exists it is returned and ``staged`` is deleted (nothing rewritten). ``manifest`` gains id, content_sha256,
    version, format, record_type and splits (rows per split).
    """
    import shutil

    out = Path(out_dir).expanduser()
    settings = {k: manifest.get(k) for k in ("model_source", "max_length", "source_files") if k in manifest}
    digest = hashlib.sha256(content_digest.encode())
    digest.update(json.dumps([record_type, settings], sort_keys=True).encode())
    artifact_id = f"{record_type}-{digest.hexdigest()[:16]}"
    for existing in list_versions(out):
        if json.loads((existing / "manifest.json").read_text(encoding="utf-8")).get("id") == artifact_id:
            shutil.rmtree(staged)
            return load_artifact(existing)
    full = dict(manifest)
    full.update(id=artifact_id, content_sha256=digest.hexdigest(), format=FORMAT, record_type=record_type,
                splits=dict(splits))
    return _publish(out, staged, full)


def _publish(out: Path, tmp: Path, manifest: dict[str, Any]) -> DatasetArtifact:
    """Rename the finished ``tmp`` folder to the next free ``out/v<N>`` (manifest ``version`` = N) and load it."""
    existing = [int(m.group(1)) for d in out.iterdir() if (m := _VERSION.fullmatch(d.name))]
    n = max(existing, default=0) + 1
    while True:
        manifest["version"] = n
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        try:
            os.rename(tmp, out / f"v{n}")  # fails if another writer created v<n> meanwhile
            return load_artifact(out / f"v{n}")
        except OSError:
            if not (out / f"v{n}").exists():
                raise
            n += 1


def _canonical_table_bytes(table: pa.Table) -> bytes:
    """Bytes that depend only on the table's values (Parquet file bytes may differ across library versions)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
