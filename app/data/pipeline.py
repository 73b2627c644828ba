"""The ingest pipeline: raw files → dataset artifact, every input row accounted for.

    read (Ray Data) ▶ validate + normalize + tokenize (Ray Data, actor pool; bad rows → quarantine)
      ▶ exact dedup (SHA-256 of the canonical record) ▶ MinHash near-dup dedup (Ray Data + union-find actor)
      ▶ contamination scan (Ray Data) ▶ split by content hash ▶ pack per block (sft) ▶ Parquet written by Ray Data
      ▶ artifact version (manifest from per-batch aggregates + quarantine + clusters + histogram)

Invariants checked at the end of every run: rows_read == rows_accepted + rows_rejected, and
rows_accepted == rows_kept + exact_dups_removed + near_dups_removed + contaminated_dropped.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.config.ingest import IngestConfig
from app.data.artifact import DatasetArtifact
from app.data.curation import REJECTED
from app.data.errors import DataError, RowError
from app.data.readers import LONG_LINE, UID_SHIFT, UNREADABLE, ReadLimits, expand_source, read_sources

log = logging.getLogger(__name__)


class RowProcessor:
    """Ray Data callable class: raw rows → validated, normalized, tokenized rows (or a rejection with a reason).

    Output columns: uid, source, line, ok, field, reason, preview, key (sha256 of canonical record), split_key (what
    the train/validation split hashes: ``key``, or the sha256 of the record's prompt with ``split_by='prompt'``),
    text (for dedup/contamination), n_tokens, tokens (JSON of the tokenized record).
    """

    def __init__(self, record_type: str, formats: dict[str, str], model_path: str, max_length: int, policy: str,
                 split_by: str = "record"):
        from transformers import AutoTokenizer

        from app.data.tokenization import ChatTokenizer

        self.record_type = record_type
        self.formats = formats
        self.split_by = split_by
        self.chat = ChatTokenizer(AutoTokenizer.from_pretrained(model_path), max_length, policy)

    def process(self, source: str, payload: bytes) -> dict[str, Any]:
        from app.data.records import canonical_text, decode_json_line, dedup_text, normalize, prompt_of

        if payload.startswith(UNREADABLE):
            raise RowError("<file>", payload[len(UNREADABLE):].decode("utf-8", "replace"))
        if payload.startswith(LONG_LINE):
            raise RowError("<line>", payload[len(LONG_LINE):].decode("utf-8", "replace"))
        if payload.startswith(REJECTED):  # a curation stage's verdict: field and reason follow
            field, _, reason = payload[len(REJECTED):].partition(b"\x00")
            raise RowError(field.decode("utf-8", "replace"), reason.decode("utf-8", "replace"))
        record = normalize(decode_json_line(payload), self.record_type, self.formats[source])
        tokens = self.chat.tokenize(self.record_type, record)
        n = len(tokens.get("input_ids") or tokens.get("prompt_input_ids") or tokens["chosen_input_ids"])
        if self.record_type == "preference":
            n = max(len(tokens["chosen_input_ids"]), len(tokens["rejected_input_ids"]))
        key = hashlib.sha256(canonical_text(record).encode("utf-8")).hexdigest()
        return {
            "key": key,
            "split_key": key if self.split_by == "record" else
            hashlib.sha256(canonical_text(prompt_of(record)).encode("utf-8")).hexdigest(),
            "text": dedup_text(record),
            "n_tokens": n,
            "tokens": json.dumps(tokens, ensure_ascii=False),
        }

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        cols: dict[str, list] = {k: [] for k in ("uid", "source", "line", "ok", "field", "reason", "preview", "key", "split_key", "text", "n_tokens", "tokens")}
        for uid, source, line, payload in zip(batch["uid"], batch["source"], batch["line"], batch["payload"]):
            payload = bytes(payload)
            try:
                out = self.process(str(source), payload)
                ok, field, reason = True, "", ""
            except RowError as exc:
                out = {"key": "", "split_key": "", "text": "", "n_tokens": 0, "tokens": ""}
                ok, field, reason = False, exc.field, exc.reason
            except Exception as exc:  # noqa: BLE001 - an unexpected failure on one row must not lose the run
                out = {"key": "", "split_key": "", "text": "", "n_tokens": 0, "tokens": ""}
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
        n = len(cols["uid"])
        cols["lang"] = [str(x) for x in batch["lang"]] if "lang" in batch else [""] * n  # from CurationStage
        cols["pii"] = [str(x) for x in batch["pii"]] if "pii" in batch else ["{}"] * n
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


def _row_counts(batch: dict[str, np.ndarray]) -> dict[str, list]:
    """Per batch of processed rows: (source, ok) → rows, tokens and PII replacements (the accounting aggregates)."""
    out: dict[str, list] = {"source": [], "ok": [], "rows": [], "tokens": [], "pii": []}
    src, ok, n = np.asarray(batch["source"]).astype(str), np.asarray(batch["ok"], bool), np.asarray(batch["n_tokens"])
    for s in np.unique(src):
        for flag in (True, False):
            mask = (src == s) & (ok == flag)
            if mask.any():
                out["source"].append(str(s)), out["ok"].append(flag)
                out["rows"].append(int(mask.sum())), out["tokens"].append(int(n[mask].sum()))
                pii: dict[str, int] = {}
                for counts in np.asarray(batch["pii"])[mask]:
                    for k, v in json.loads(str(counts)).items():
                        pii[k] = pii.get(k, 0) + int(v)
                out["pii"].append(json.dumps(pii))
    return out


def _group_counts(batch: dict[str, np.ndarray]) -> dict[str, list]:
    """Per batch of kept rows: (source, lang) → rows (the sampling aggregates)."""
    pairs: dict[tuple[str, str], int] = {}
    for s, lang in zip(batch["source"], batch["lang"]):
        pairs[(str(s), str(lang))] = pairs.get((str(s), str(lang)), 0) + 1
    return {"source": [k[0] for k in pairs], "lang": [k[1] for k in pairs], "rows": list(pairs.values())}


def _sample(batch: dict[str, np.ndarray], lang_rates: dict[str, float], source_rates: dict[str, float],
            seed: int) -> dict[str, np.ndarray]:
    """Each row repeated keep_copies(rate_lang · rate_source, hash(key)) times (0: sampled out)."""
    from app.data.curation import keep_copies, row_fraction

    copies = np.array([keep_copies(lang_rates.get(str(g), 1.0) * source_rates.get(str(s), 1.0),
                                   row_fraction(str(k), f"sample-{seed}"))
                       for g, s, k in zip(batch["lang"], batch["source"], batch["key"])], dtype=np.int64)
    idx = np.repeat(np.arange(copies.size), copies)  # copies stay next to their original
    return {c: np.asarray(v)[idx] for c, v in batch.items()}


def _curate(batch: dict[str, np.ndarray], stage) -> dict[str, np.ndarray]:
    return stage(batch)


def _select(batch: dict[str, np.ndarray], removed: np.ndarray, columns: list[str], ok: bool = True,
            split: str | None = None, fraction: float = 0.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows with this ``ok`` flag whose uid is not in ``removed`` (and, if ``split``, whose ``split_key`` — the content
    hash of the record or of its prompt — falls in it)."""
    mask = np.asarray(batch["ok"], bool) == ok
    if removed.size:
        mask &= ~np.isin(np.asarray(batch["uid"], np.int64), removed)
    if split is not None:
        mask &= np.array([_split_of(str(k), fraction, seed) == split for k in batch["split_key"]], dtype=bool)
    return {c: np.asarray(batch[c])[mask] for c in columns}


def _length_hist(batch: dict[str, np.ndarray], max_length: int) -> dict[str, list]:
    n = np.clip(np.asarray(batch["n_tokens"], dtype=np.int64), 0, max_length)
    return {"hist": [np.bincount(n, minlength=max_length + 1).tolist()]}


def _where(files: list[tuple[str, str]], uid: int) -> dict[str, Any]:
    """(source file, line) of a uid (readers: uid = file index · 2^32 + line)."""
    return {"source": files[int(uid) // UID_SHIFT][0], "line": int(uid) % UID_SHIFT}


def _write_split(kept, split: str, cfg: IngestConfig, staged: Path) -> dict[str, Any]:
    """Artifact rows of one split, built per block and written as Parquet by Ray Data; returns its totals."""
    from app.data.artifact import SCHEMAS
    from app.data.packer import artifact_rows, batch_totals

    schema = SCHEMAS[cfg.record_type]
    rows = kept.map_batches(artifact_rows, batch_format="numpy", batch_size=cfg.pack_block_rows,
                            fn_kwargs=dict(record_type=cfg.record_type, columns=schema.names,
                                           max_length=cfg.max_length, pack=cfg.pack)).materialize()
    totals = rows.map_batches(batch_totals, batch_format="numpy", batch_size=None,
                              fn_kwargs={"max_length": cfg.max_length}).take_all()
    (staged / split).mkdir()
    if sum(t["rows"] for t in totals):
        def to_schema(t):
            return t.select(schema.names).cast(schema)

        rows.map_batches(to_schema, batch_format="pyarrow", batch_size=None).write_parquet(
            str(staged / split), compression="zstd")
    else:
        import pyarrow.parquet as pq

        pq.write_table(schema.empty_table(), staged / split / "part-00000.parquet")
    return {"rows": sum(t["rows"] for t in totals), "trained": sum(t["trained"] for t in totals),
            "digest": sum(int(t["digest"], 16) for t in totals) % (1 << 128),
            "hist": np.sum([np.asarray(t["hist"]) for t in totals], axis=0) if totals else None}


def run_ingest(cfg: IngestConfig, out_dir: str | Path | None = None, progress: bool = True) -> DatasetArtifact:
    """Run the whole pipeline for ``cfg`` and return the written artifact (Ray must be initialised by the caller).

    Nothing proportional to the row count reaches the driver: counts come from per-batch aggregates, rejected
    rows stream into quarantine.jsonl batch by batch, splits and packing run per block inside Ray Data and Ray
    Data writes the Parquet. The driver holds only the removed/flagged uids (proportional to the duplicates and
    contaminated rows).
    """
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
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # same input -> same blocks -> same id

    # 1. read + validate + tokenize, in parallel; materialized once (object store), used by every later stage
    raw = read_sources(files, ReadLimits(**cfg.limits.model_dump()))
    cur = cfg.curation
    if cur.pii or cur.quality is not None or cur.language_id != "off":
        from app.data.curation import CurationStage, QualityRules

        stage = CurationStage(cur.pii, QualityRules(**cur.quality.model_dump()) if cur.quality is not None else None,
                              None if cur.language_id == "off" else cur.language_id, cur.languages)
        raw = raw.map_batches(_curate, fn_kwargs={"stage": stage}, batch_size=256, batch_format="numpy")
    processed = raw.map_batches(
        RowProcessor,
        fn_constructor_kwargs=dict(record_type=cfg.record_type, formats=formats, model_path=model_path,
                                   max_length=cfg.max_length, policy=cfg.length_policy, split_by=cfg.split_by),
        batch_size=256, batch_format="numpy", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2), num_cpus=1,
    ).materialize()
    counts = processed.map_batches(_row_counts, batch_format="numpy", batch_size=None).take_all()
    rows_read = sum(c["rows"] for c in counts)
    n_accepted = sum(c["rows"] for c in counts if c["ok"])
    n_rejected = sum(c["rows"] for c in counts if not c["ok"])
    source_rows: dict[str, int] = {}
    pii_replaced: dict[str, int] = {}
    for c in counts:
        source_rows[c["source"]] = source_rows.get(c["source"], 0) + c["rows"]
        for k, v in json.loads(c["pii"]).items():
            pii_replaced[k] = pii_replaced.get(k, 0) + v
    stages["read_validate_tokenize_s"] = time.perf_counter() - t0

    # 2. exact dedup: first occurrence (smallest uid) of each canonical-record hash wins
    t = time.perf_counter()
    removed = np.empty(0, np.int64)
    if cfg.dedup.exact and n_accepted > 1:
        from app.data.exact_dedup import find_exact_duplicates

        removed = find_exact_duplicates(processed.map_batches(
            _select, batch_format="numpy", fn_kwargs={"removed": removed, "columns": ["uid", "key"]}))
    exact_removed = int(removed.size)
    stages["exact_dedup_s"] = time.perf_counter() - t

    # 3. near dedup on Ray
    t = time.perf_counter()
    near_clusters: dict[int, list[int]] = {}
    if cfg.dedup.near and n_accepted - exact_removed > 1:
        from app.data.near_dedup import MinHashParams, find_near_duplicates

        docs = processed.map_batches(_select, batch_format="numpy",
                                     fn_kwargs={"removed": removed, "columns": ["uid", "text"]}).map_batches(
            lambda b: {"id": b["uid"], "text": b["text"]}, batch_format="numpy")
        params = MinHashParams(cfg.dedup.threshold, cfg.dedup.num_perm, cfg.dedup.shingle, cfg.dedup.shingle_size, cfg.dedup.seed)
        near = find_near_duplicates(docs, params)
        near_clusters = near.clusters
        log.info("near dedup: %d LSH candidate pairs, %d checked exactly, %d verified edges, %d clusters, %s",
                 near.candidates, near.checked, near.verified, len(near_clusters),
                 {k: round(v, 2) for k, v in near.seconds.items()})
        removed = np.union1d(removed, np.fromiter(near.removed, dtype=np.int64, count=len(near.removed)))
    near_removed = int(removed.size) - exact_removed
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

        flagged = processed.map_batches(_select, batch_format="numpy",
                                        fn_kwargs={"removed": removed, "columns": ["uid", "text"]}).map_batches(
            scan, batch_size=4096, batch_format="numpy").filter(lambda r: r["hits"] != "{}").take_all()
        contaminated = {int(r["uid"]): json.loads(r["hits"]) for r in flagged}
    dropped = sorted(contaminated) if cfg.contamination.policy == "drop" else []
    removed = np.union1d(removed, np.asarray(dropped, dtype=np.int64))
    stages["contamination_s"] = time.perf_counter() - t

    # 5. sampling (mixing weights per source, temperature-balanced languages) from aggregated group counts
    t = time.perf_counter()
    sampling: dict[str, Any] = {}
    kept_before_sampling = None
    if cur.language_alpha is not None or cur.source_weights:
        from app.data.curation import sampling_rates

        groups = processed.map_batches(_select, batch_format="numpy", fn_kwargs=dict(
            removed=removed, columns=["source", "lang"])).map_batches(_group_counts, batch_format="numpy",
                                                                       batch_size=None).take_all()
        by_lang: dict[str, int] = {}
        by_source: dict[str, int] = {}
        for g in groups:
            by_lang[g["lang"]] = by_lang.get(g["lang"], 0) + g["rows"]
            by_source[g["source"]] = by_source.get(g["source"], 0) + g["rows"]
        kept_before_sampling = sum(by_lang.values())
        lang_rates = sampling_rates(by_lang, cur.language_alpha) if cur.language_alpha is not None else {}
        weights = {f: w for f, _ in files for pat, w in cur.source_weights.items() if fnmatch.fnmatch(f, pat)}
        source_rates = sampling_rates(by_source, 1.0, weights) if cur.source_weights else {}
        sampling = {"languages_before": by_lang, "sources_before": by_source, "language_rates": lang_rates,
                    "source_rates": source_rates, "seed": cur.sample_seed}
    stages["sampling_plan_s"] = time.perf_counter() - t

    # 6. split by content hash, pack per block, write Parquet: all inside Ray Data, into a staging folder
    t = time.perf_counter()
    out_root = Path(out_dir or cfg.output_dir or rayalign_home() / "datasets").expanduser()
    from app.data.artifact import publish_version, staging_dir

    staged = staging_dir(out_root / cfg.name)
    try:
        split_names = ["train"] + (["validation"] if cfg.validation_fraction > 0 else [])
        columns = ["uid", "key", "tokens", "n_tokens", "source", "lang"]
        written: dict[str, dict[str, Any]] = {}
        hist = np.zeros(cfg.max_length + 1, np.int64)
        for name in split_names:
            kept = processed.map_batches(_select, batch_format="numpy", fn_kwargs=dict(
                removed=removed, columns=columns, split=name if len(split_names) > 1 else None,
                fraction=cfg.validation_fraction, seed=cfg.seed))
            if sampling:
                kept = kept.map_batches(_sample, batch_format="numpy", fn_kwargs=dict(
                    lang_rates=sampling["language_rates"], source_rates=sampling["source_rates"], seed=cur.sample_seed))
            for h in kept.map_batches(_length_hist, batch_format="numpy", batch_size=None,
                                      fn_kwargs={"max_length": cfg.max_length}).take_all():
                hist += np.asarray(h["hist"])
            written[name] = _write_split(kept, name, cfg, staged)
        stages["split_pack_write_s"] = time.perf_counter() - t

        # 7. invariants, quarantine, report, artifact
        rows_out = int(hist.sum())
        rows_kept = rows_out if kept_before_sampling is None else kept_before_sampling
        n_tokens = int(np.dot(hist, np.arange(hist.size)))
        if rows_read != n_accepted + n_rejected:
            raise DataError(f"row accounting broke: read {rows_read} != accepted {n_accepted} + rejected {n_rejected}")
        if n_accepted != rows_kept + exact_removed + near_removed + len(dropped):
            raise DataError(f"row accounting broke: accepted {n_accepted} != kept {rows_kept} + exact dups "
                            f"{exact_removed} + near dups {near_removed} + contaminated dropped {len(dropped)}")
        windows = sum(w["rows"] for w in written.values())
        packing: dict[str, Any] = {}
        if cfg.record_type == "sft":
            padded = rows_kept * cfg.max_length
            packing = {"packing_efficiency": n_tokens / (windows * cfg.max_length) if cfg.pack and windows else None,
                       "padded_efficiency": n_tokens / padded if padded else 0.0, "windows": windows}
        manifest = {
            "name": cfg.name,
            "model_source": cfg.model.source,
            "max_length": cfg.max_length,
            "length_policy": cfg.length_policy,
            "rows_read": rows_read,
            "rows_accepted": n_accepted,
            "rows_rejected": n_rejected,
            "rows_kept": rows_kept,
            "exact_dups_removed": exact_removed,
            "near_dups_removed": near_removed,
            "near_dup_clusters": len(near_clusters),
            "contaminated_flagged": len(contaminated),
            "contaminated_dropped": len(dropped),
            "contamination_policy": cfg.contamination.policy if cfg.contamination.benchmarks else None,
            "tokens": n_tokens,
            "trained_tokens": written["train"]["trained"] if cfg.record_type == "sft" else None,
            "packing_efficiency": packing.get("packing_efficiency"),
            "padded_efficiency": packing.get("padded_efficiency"),
            "packed_windows": packing.get("windows"),
            "pack_block_rows": cfg.pack_block_rows if cfg.record_type == "sft" and cfg.pack else None,
            "rows_after_sampling": rows_out,
            "sampling": sampling or None,
            "pii_replaced": pii_replaced if cur.pii else None,
            "curation": cur.model_dump(),
            "dedup": cfg.dedup.model_dump(),
            "source_files": [{"path": f, "sha256": _sha256_file(f), "rows": int(source_rows.get(f, 0))} for f, _ in files],
            "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
        }
        with open(staged / "quarantine.jsonl", "w", encoding="utf-8") as fh:  # streamed, one batch at a time
            rejected = processed.map_batches(_select, batch_format="numpy", fn_kwargs=dict(
                removed=np.empty(0, np.int64), ok=False, columns=["uid", "source", "line", "field", "reason", "preview"]))
            for b in rejected.iter_batches(batch_size=4096, batch_format="numpy"):
                for i in np.argsort(b["uid"], kind="stable"):
                    fh.write(json.dumps({"source": str(b["source"][i]), "line": int(b["line"][i]),
                                         "field": str(b["field"][i]), "reason": str(b["reason"][i]),
                                         "preview": str(b["preview"][i])}, ensure_ascii=False) + "\n")
        with open(staged / "clusters.jsonl", "w", encoding="utf-8") as fh:
            for kept_id in sorted(near_clusters):
                fh.write(json.dumps({"kept": _where(files, kept_id),
                                     "removed": [_where(files, u) for u in near_clusters[kept_id]]}) + "\n")
        with open(staged / "contamination.jsonl", "w", encoding="utf-8") as fh:
            for uid in sorted(contaminated):
                fh.write(json.dumps({"row": _where(files, uid), "benchmark_items": contaminated[uid],
                                     "dropped": uid in set(dropped)}) + "\n")
        from app.data.length_plot import plot_length_histogram

        packed_hist = np.sum([w["hist"] for w in written.values() if w["hist"] is not None], axis=0)
        plot_length_histogram(staged / "length_hist.png", hist, cfg.max_length,
                              f"{cfg.name}: {cfg.record_type} token lengths",
                              packed_hist if cfg.record_type == "sft" else None)
        content = ",".join(f"{name}:{w['rows']}:{w['digest']:032x}" for name, w in written.items())
        artifact = publish_version(out_root / cfg.name, staged, cfg.record_type, manifest, content,
                                   {name: w["rows"] for name, w in written.items()})
    finally:
        if staged.exists():
            import shutil

            shutil.rmtree(staged)
    log.info("ingest %s: read %d, rejected %d, exact dups %d, near dups %d, contaminated %d (dropped %d), kept %d -> %s",
             artifact.id, rows_read, n_rejected, exact_removed, near_removed, len(contaminated), len(dropped), rows_kept,
             artifact.path)
    return artifact
