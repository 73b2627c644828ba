"""The ingest pipeline: raw files → dataset artifact, every input row accounted for.

    read (Ray Data) ▶ validate + normalize + tokenize (Ray Data, actor pool; bad rows → quarantine)
      ▶ exact dedup (SHA-256 of the canonical record) ▶ MinHash near-dup dedup (Ray Data + union-find actor)
      ▶ contamination scan (Ray Data) ▶ split ▶ pack (sft) ▶ artifact (Parquet + manifest + histogram)

Invariants checked at the end of every run: rows_read == rows_accepted + rows_rejected, and
rows_accepted == rows_kept + exact_dups_removed + near_dups_removed + contaminated_dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.config.ingest import IngestConfig
from app.core.packing import concat_packed, pack_sequences, packing_efficiency, padded_efficiency
from app.data.artifact import DatasetArtifact, write_artifact
from app.data.errors import DataError, RowError
from app.data.readers import expand_source, read_sources

log = logging.getLogger(__name__)
UNREADABLE = b"\x00unreadable file: "


class RowProcessor:
    """Ray Data callable class: raw rows → validated, normalized, tokenized rows (or a rejection with a reason).

    Output columns: uid, source, line, ok, field, reason, preview, key (sha256 of canonical record), text (for
    dedup/contamination), n_tokens, tokens (JSON of the tokenized record).
    """

    def __init__(self, record_type: str, formats: dict[str, str], model_path: str, max_length: int, policy: str):
        from transformers import AutoTokenizer

        from app.data.tokenization import ChatTokenizer

        self.record_type = record_type
        self.formats = formats
        self.chat = ChatTokenizer(AutoTokenizer.from_pretrained(model_path), max_length, policy)

    def process(self, source: str, payload: bytes) -> dict[str, Any]:
        from app.data.records import canonical_text, decode_json_line, dedup_text, normalize

        if payload.startswith(UNREADABLE):
            raise RowError("<file>", payload[len(UNREADABLE):].decode("utf-8", "replace"))
        record = normalize(decode_json_line(payload), self.record_type, self.formats[source])
        tokens = self.chat.tokenize(self.record_type, record)
        n = len(tokens.get("input_ids") or tokens.get("prompt_input_ids") or tokens["chosen_input_ids"])
        if self.record_type == "preference":
            n = max(len(tokens["chosen_input_ids"]), len(tokens["rejected_input_ids"]))
        return {
            "key": hashlib.sha256(canonical_text(record).encode("utf-8")).hexdigest(),
            "text": dedup_text(record),
            "n_tokens": n,
            "tokens": json.dumps(tokens, ensure_ascii=False),
        }

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        cols: dict[str, list] = {k: [] for k in ("uid", "source", "line", "ok", "field", "reason", "preview", "key", "text", "n_tokens", "tokens")}
        for uid, source, line, payload in zip(batch["uid"], batch["source"], batch["line"], batch["payload"]):
            payload = bytes(payload)
            try:
                out = self.process(str(source), payload)
                ok, field, reason = True, "", ""
            except RowError as exc:
                out = {"key": "", "text": "", "n_tokens": 0, "tokens": ""}
                ok, field, reason = False, exc.field, exc.reason
            except Exception as exc:  # noqa: BLE001 - an unexpected failure on one row must not lose the run
                out = {"key": "", "text": "", "n_tokens": 0, "tokens": ""}
                ok, field, reason = False, "<row>", f"unexpected {type(exc).__name__}: {exc}"
            cols["uid"].append(int(uid))
            cols["source"].append(str(source))
            cols["line"].append(int(line))
            cols["ok"].append(ok)
            cols["field"].append(field)
            cols["reason"].append(reason)
            cols["preview"].append("" if ok else payload[:200].decode("utf-8", "replace"))
            for k, v in out.items():
                cols[k].append(v)
        return cols


def _split_of(key: str, fraction: float, seed: int) -> str:
    if fraction <= 0:
        return "train"
    h = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") / 2**64
    return "validation" if h < fraction else "train"


def _sha256_file(path: str) -> str:
    import fsspec

    digest = hashlib.sha256()
    with fsspec.open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pack_split(rows: list[dict[str, Any]], max_length: int) -> tuple[list[dict[str, Any]], list[int]]:
    lengths = [len(r["input_ids"]) for r in rows]
    bins = pack_sequences(lengths, max_length)
    packed = []
    for members in sorted(bins, key=lambda m: min(m)):  # stable order: by earliest example in the window
        members = sorted(members)
        ids, labels, pos = concat_packed([rows[i]["input_ids"] for i in members], [rows[i]["labels"] for i in members])
        packed.append({"input_ids": ids, "labels": labels, "position_ids": pos, "seq_len": len(ids)})
    return packed, [p["seq_len"] for p in packed]


def run_ingest(cfg: IngestConfig, out_dir: str | Path | None = None, progress: bool = True) -> DatasetArtifact:
    """Run the whole pipeline for ``cfg`` and return the written artifact (Ray must be initialised by the caller)."""
    import ray

    from app.config.paths import rayalign_home
    from app.models.loader import resolve_model

    if not cfg.sources:
        raise DataError("ingest config has no sources")
    t0 = time.perf_counter()
    files: list[tuple[str, str]] = []
    formats: dict[str, str] = {}
    for src in cfg.sources:
        for f, r in expand_source(src.path, src.reader):
            if f not in formats:
                files.append((f, r))
                formats[f] = src.input_format
    model_path = str(resolve_model(cfg.model).path)
    stages: dict[str, float] = {}

    # 1. read + validate + tokenize, in parallel; materialized once, used by every later stage
    raw = read_sources(files)
    processed = raw.map_batches(
        RowProcessor,
        fn_constructor_kwargs=dict(record_type=cfg.record_type, formats=formats, model_path=model_path,
                                   max_length=cfg.max_length, policy=cfg.length_policy),
        batch_size=256, batch_format="numpy", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2), num_cpus=1,
    ).materialize()
    stages["read_validate_tokenize_s"] = time.perf_counter() - t0
    meta = processed.select_columns(["uid", "ok", "key", "n_tokens", "source", "line", "field", "reason", "preview"]).to_pandas()
    meta = meta.sort_values("uid", kind="stable").reset_index(drop=True)
    rows_read = len(meta)
    rejected = meta[~meta["ok"]]
    accepted = meta[meta["ok"]]

    # 2. exact dedup: first occurrence (smallest uid) of each canonical-record hash wins
    t = time.perf_counter()
    if cfg.dedup.exact:
        first = accepted.drop_duplicates("key", keep="first")
    else:
        first = accepted
    exact_removed = len(accepted) - len(first)
    stages["exact_dedup_s"] = time.perf_counter() - t

    # 3. near dedup on Ray Data
    t = time.perf_counter()
    keep_uids = set(first["uid"].tolist())
    near_clusters: dict[int, list[int]] = {}
    if cfg.dedup.near and len(first) > 1:
        from app.data.near_dedup import MinHashParams, find_near_duplicates

        docs = processed.filter(lambda r: r["ok"] and r["uid"] in keep_uids).map_batches(
            lambda b: {"id": b["uid"], "text": b["text"]}, batch_format="numpy")
        params = MinHashParams(cfg.dedup.threshold, cfg.dedup.num_perm, cfg.dedup.shingle, cfg.dedup.shingle_size, cfg.dedup.seed)
        near = find_near_duplicates(docs, params)
        near_clusters = near.clusters
        keep_uids -= near.removed
    near_removed = len(first) - len(keep_uids)
    stages["near_dedup_s"] = time.perf_counter() - t

    # 4. contamination scan vs benchmark files (index broadcast once through the object store)
    t = time.perf_counter()
    contaminated: dict[int, dict[str, int]] = {}
    if cfg.contamination.benchmarks:
        from app.data.contamination import build_index, scan_texts

        index, n_items = build_index(cfg.contamination.benchmarks, cfg.contamination.fields, cfg.contamination.ngram)
        index_ref = ray.put(index)
        c = cfg.contamination

        def scan(batch):
            hits = scan_texts([str(x) for x in batch["text"]], ray.get(index_ref), c.ngram, c.min_hits)
            return {"uid": batch["uid"], "hits": [json.dumps(h, sort_keys=True) for h in hits]}

        flagged = processed.filter(lambda r: r["uid"] in keep_uids).map_batches(
            scan, batch_size=4096, batch_format="numpy").filter(lambda r: r["hits"] != "{}").to_pandas()
        contaminated = {int(u): json.loads(h) for u, h in zip(flagged["uid"], flagged["hits"])}
    dropped = set(contaminated) if cfg.contamination.policy == "drop" else set()
    keep_uids -= dropped
    stages["contamination_s"] = time.perf_counter() - t

    # 5. collect kept rows in input order, split, pack
    t = time.perf_counter()
    kept = processed.filter(lambda r: r["uid"] in keep_uids).select_columns(["uid", "key", "tokens"]).to_pandas()
    kept = kept.sort_values("uid", kind="stable")
    splits: dict[str, list[dict[str, Any]]] = {"train": []}
    if cfg.validation_fraction > 0:
        splits["validation"] = []
    for key, tokens in zip(kept["key"], kept["tokens"]):
        splits[_split_of(key, cfg.validation_fraction, cfg.seed)].append(json.loads(tokens))
    example_lengths = [int(n) for n in meta.set_index("uid").loc[sorted(keep_uids), "n_tokens"]] if keep_uids else []
    packing: dict[str, Any] = {}
    packed_lengths: list[int] = []
    if cfg.record_type == "sft":
        for name in list(splits):
            rows = splits[name]
            if cfg.pack:
                packed, lens = _pack_split(rows, cfg.max_length)
            else:
                packed = [dict(r, position_ids=list(range(len(r["input_ids"]))), seq_len=len(r["input_ids"])) for r in rows]
                lens = [p["seq_len"] for p in packed]
            splits[name] = packed
            packed_lengths += lens
        ex = example_lengths
        packing = {
            "packed": cfg.pack,
            "packing_efficiency": packing_efficiency(ex, len(packed_lengths), cfg.max_length) if cfg.pack else None,
            "padded_efficiency": padded_efficiency(ex, cfg.max_length),
            "windows": len(packed_lengths),
        }
    stages["pack_s"] = time.perf_counter() - t

    # 6. invariants, quarantine, report, artifact
    rows_kept = len(keep_uids)
    if rows_read != len(accepted) + len(rejected):
        raise DataError(f"row accounting broke: read {rows_read} != accepted {len(accepted)} + rejected {len(rejected)}")
    if len(accepted) != rows_kept + exact_removed + near_removed + len(dropped):
        raise DataError("row accounting broke: accepted != kept + exact dups + near dups + contaminated dropped")
    out_root = Path(out_dir or cfg.output_dir or rayalign_home() / "datasets").expanduser()
    out_root.mkdir(parents=True, exist_ok=True)
    source_rows = meta.groupby("source").size().to_dict()
    labels_trained = sum(sum(1 for x in r.get("labels", []) if x != -100) for r in splits["train"]) if cfg.record_type == "sft" else None
    manifest = {
        "name": cfg.name,
        "version": 1,
        "model_source": cfg.model.source,
        "max_length": cfg.max_length,
        "length_policy": cfg.length_policy,
        "rows_read": rows_read,
        "rows_accepted": len(accepted),
        "rows_rejected": len(rejected),
        "rows_kept": rows_kept,
        "exact_dups_removed": exact_removed,
        "near_dups_removed": near_removed,
        "near_dup_clusters": len(near_clusters),
        "contaminated_flagged": len(contaminated),
        "contaminated_dropped": len(dropped),
        "contamination_policy": cfg.contamination.policy if cfg.contamination.benchmarks else None,
        "tokens": int(sum(example_lengths)),
        "trained_tokens": labels_trained,
        "packing_efficiency": packing.get("packing_efficiency"),
        "padded_efficiency": packing.get("padded_efficiency"),
        "packed_windows": packing.get("windows"),
        "dedup": cfg.dedup.model_dump(),
        "source_files": [{"path": f, "sha256": _sha256_file(f), "rows": int(source_rows.get(f, 0))} for f, _ in files],
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        with open(tmpd / "quarantine.jsonl", "w", encoding="utf-8") as fh:
            for r in rejected.itertuples():
                fh.write(json.dumps({"source": r.source, "line": int(r.line), "field": r.field, "reason": r.reason,
                                     "preview": r.preview}, ensure_ascii=False) + "\n")
        by_uid = meta.set_index("uid")
        with open(tmpd / "clusters.jsonl", "w", encoding="utf-8") as fh:
            for kept_id in sorted(near_clusters):
                fh.write(json.dumps({"kept": _where(by_uid, kept_id), "removed": [_where(by_uid, u) for u in near_clusters[kept_id]]}) + "\n")
        with open(tmpd / "contamination.jsonl", "w", encoding="utf-8") as fh:
            for uid in sorted(contaminated):
                fh.write(json.dumps({"row": _where(by_uid, uid), "benchmark_items": contaminated[uid],
                                     "dropped": uid in dropped}) + "\n")
        from app.data.length_plot import plot_length_histogram

        plot_length_histogram(tmpd / "length_hist.png", example_lengths, cfg.max_length,
                              f"{cfg.name}: {cfg.record_type} token lengths", packed_lengths or None)
        attachments = {n: tmpd / n for n in ("quarantine.jsonl", "clusters.jsonl", "contamination.jsonl", "length_hist.png")}
        artifact = write_artifact(out_root / cfg.name, cfg.record_type, splits, manifest, attachments=attachments)
    log.info("ingest %s: read %d, rejected %d, exact dups %d, near dups %d, contaminated %d (dropped %d), kept %d -> %s",
             artifact.id, rows_read, len(rejected), exact_removed, near_removed, len(contaminated), len(dropped), rows_kept, artifact.path)
    return artifact


def _where(by_uid, uid: int) -> dict[str, Any]:
    row = by_uid.loc[uid]
    return {"source": row["source"], "line": int(row["line"])}
