"""Reference log-probs for DPO, precomputed ONCE as a Ray Data ``map_batches`` stage and stored in the artifact.

For every pair the frozen reference model's log π_ref(chosen|prompt) and log π_ref(rejected|prompt) (sums over
response tokens, the label != -100 positions) are added as float64 columns ``ref_chosen_logp`` /
``ref_rejected_logp`` to each split's Parquet shards. DPO training then holds one model (the policy) instead of
two and skips the reference forward on every step.

The artifact's manifest records which reference produced the columns (``reference_logprobs``: model source, base
weights SHA, adapter and its SHA, dtype). Precomputing again with the same reference is a no-op; a different
reference recomputes. The data rows and the artifact ``id`` stay the same: the id names the data, the manifest
entry names the reference.

KTO (record_type ``unpaired``): every row also gets its mismatched sequence for the KL reference point z0 (TRL's
KTOTrainer: prompt i with the completion of row i − 1, :func:`app.core.preference_losses.kto_mismatch_index`, here
over the whole split in artifact order) as ``kl_input_ids`` / ``kl_labels``, and the reference's log-probs of both
sequences as ``ref_logp`` / ``ref_kl_logp``.

    precompute_reference_logprobs("artifacts/hh", ModelSpec(source="bundled:smollm2-135m-instruct"))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from app.config.common import ModelSpec
from app.data.artifact import load_artifact
from app.data.errors import DataError

log = logging.getLogger(__name__)

COLUMNS = ("ref_chosen_logp", "ref_rejected_logp")
KTO_REF_COLUMNS = ("ref_logp", "ref_kl_logp")
KL_COLUMNS = ("kl_input_ids", "kl_labels")
SCORED = {  # record type → (sequence columns scored in one packed forward, the log-prob columns they become)
    "preference": ((("chosen_input_ids", "chosen_labels"), ("rejected_input_ids", "rejected_labels")), COLUMNS),
    "unpaired": ((("input_ids", "labels"), KL_COLUMNS), KTO_REF_COLUMNS),
}
MANIFEST_KEY = "reference_logprobs"


def reference_identity(model: ModelSpec, adapter: str | None) -> dict[str, Any]:
    """What identifies a reference model: base source + weights SHA, optional adapter + its weights SHA, dtype."""
    from app.models.loader import resolve_model

    resolved = resolve_model(model)
    ident: dict[str, Any] = {"model_source": model.source, "base_sha": resolved.base_sha, "dtype": model.dtype, "adapter": None, "adapter_sha": None}
    if adapter:
        weights = Path(adapter).expanduser() / "adapter_model.safetensors"
        if not weights.is_file():
            raise DataError(f"reference adapter {adapter}: no adapter_model.safetensors (not a peft adapter folder)")
        ident["adapter"] = str(Path(adapter).expanduser().resolve())
        ident["adapter_sha"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    return ident


def load_reference_model(model_path: str, adapter: str | None, dtype: str):
    """The frozen reference: base causal LM, with an SFT adapter merged in when given. Eval mode, no grads."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype))
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.eval().requires_grad_(False)
    return model


def pair_logprobs(model, batch: dict[str, list], prefix: str = "") -> tuple[Any, Any]:
    """(log π(chosen), log π(rejected)) for a batch of pairs in one packed forward. Returns two float32 tensors [B].

    ``batch`` has the preference columns ``chosen_input_ids``, ``chosen_labels``, ``rejected_input_ids``,
    ``rejected_labels`` as lists of token-id lists. Shared by this precompute and the live check in tests.
    """
    from app.core.logprobs import concat_for_packed_forward, packed_sequence_logprobs

    ids = list(batch["chosen_input_ids"]) + list(batch["rejected_input_ids"])
    labels = list(batch["chosen_labels"]) + list(batch["rejected_labels"])
    logps = packed_sequence_logprobs(model, concat_for_packed_forward(ids, labels))
    n = len(batch["chosen_input_ids"])
    return logps[:n], logps[n:]


def mismatched_sequences(input_ids: list[list[int]], labels: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """KTO's KL sequences: row i's prompt (tokens before its first label) + row i−1's completion (from its first label).

    input_ids, labels: one split's rows in artifact order. Returns (kl_input_ids, kl_labels), -100 on the prompt.
    """
    from app.core.masking import IGNORE_INDEX
    from app.core.preference_losses import kto_mismatch_index

    starts = [next((k for k, y in enumerate(row) if y != IGNORE_INDEX), len(row)) for row in labels]
    kl_ids, kl_labels = [], []
    for i, j in enumerate(kto_mismatch_index(len(input_ids)).tolist()):
        prompt = input_ids[i][: starts[i]]
        kl_ids.append(prompt + input_ids[j][starts[j]:])
        kl_labels.append([IGNORE_INDEX] * len(prompt) + labels[j][starts[j]:])
    return kl_ids, kl_labels


def add_mismatched_sequences(artifact) -> None:
    """Write ``kl_input_ids`` / ``kl_labels`` into every split of an 'unpaired' artifact (once; atomic per split)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split in artifact.manifest["splits"]:
        table = artifact.read_table(split)
        if KL_COLUMNS[0] in table.column_names:
            continue
        kl_ids, kl_labels = mismatched_sequences(table.column("input_ids").to_pylist(), table.column("labels").to_pylist())
        table = table.append_column(KL_COLUMNS[0], pa.array(kl_ids, pa.list_(pa.int32())))
        table = table.append_column(KL_COLUMNS[1], pa.array(kl_labels, pa.list_(pa.int32())))
        src, new, old = artifact.split_path(split), artifact.path / f".{split}.kl", artifact.path / f".{split}.old"
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
        pq.write_table(table, new / "part-00000.parquet")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(src, old)
        os.replace(new, src)
        shutil.rmtree(old, ignore_errors=True)


class ReferenceScorer:
    """Ray Data callable class: loads the reference once per actor, appends the two log-prob columns to each batch
    (pairs: chosen/rejected; unpaired KTO rows: the row and its mismatched KL sequence)."""

    def __init__(self, model_path: str, adapter: str | None, dtype: str, threads: int, total_pairs: int = 0,
                 progress_every_s: float = 30.0, record_type: str = "preference"):
        import torch

        torch.set_num_threads(threads)
        self.sequences, self.columns = SCORED[record_type]
        self.model = load_reference_model(model_path, adapter, dtype)
        # Ray Data's own progress counts blocks (one block = the whole artifact here): print pairs instead
        self.total, self.every, self.done = total_pairs, progress_every_s, 0
        self.t0 = self.last = time.perf_counter()

    def _progress(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every or self.done == self.total:
            self.last, rate = now, self.done / max(now - self.t0, 1e-9)
            eta = f", ~{(self.total - self.done) / rate / 60:.1f} min left" if self.total > self.done else ""
            print(f"[reference log-probs] {self.done}/{self.total or '?'} pairs ({rate:.2f} pairs/s{eta})", flush=True)

    def __call__(self, batch):
        import pyarrow as pa
        import torch

        split = [Path(p).parent.name for p in batch.column("path").to_pylist()]
        table = batch.drop_columns([c for c in (*self.columns, "path") if c in batch.column_names])
        (a_ids, a_labels), (b_ids, b_labels) = self.sequences
        cols = {"chosen_input_ids": table.column(a_ids).to_pylist(), "chosen_labels": table.column(a_labels).to_pylist(),
                "rejected_input_ids": table.column(b_ids).to_pylist(), "rejected_labels": table.column(b_labels).to_pylist()}
        with torch.inference_mode():
            first, second = pair_logprobs(self.model, cols)
        self._progress(len(first))
        table = table.append_column(self.columns[0], pa.array(first.numpy(), pa.float64()))
        table = table.append_column(self.columns[1], pa.array(second.numpy(), pa.float64()))
        return table.append_column("split", pa.array(split, pa.string()))


def has_reference_logprobs(artifact_path: str | Path, identity: dict[str, Any]) -> bool:
    """True when the artifact already carries log-prob columns from exactly this reference."""
    entry = load_artifact(artifact_path).manifest.get(MANIFEST_KEY)
    return bool(entry) and {k: entry.get(k) for k in identity} == identity


def precompute_reference_logprobs(
    artifact_path: str | Path,
    model: ModelSpec,
    adapter: str | None = None,
    batch_size: int = 8,
    num_cpus: float = 1.0,
    force: bool = False,
) -> dict[str, Any]:
    """Add ``ref_chosen_logp`` / ``ref_rejected_logp`` to every split of a preference artifact (in place, atomically per
    split); for an 'unpaired' (KTO) artifact: ``kl_input_ids`` / ``kl_labels`` and ``ref_logp`` / ``ref_kl_logp``.

    Runs on the current Ray cluster (call ``init_ray`` first). ``num_cpus``: torch threads of the one scoring actor,
    which reserves at most all but one of the cluster's CPUs. Returns the manifest's ``reference_logprobs`` entry.
    """
    import ray

    from app.models.loader import resolve_model

    artifact = load_artifact(artifact_path)
    record_type = artifact.manifest["record_type"]
    if record_type not in SCORED:
        raise DataError(f"{artifact.path}: record_type is {record_type!r}, reference log-probs need 'preference' or 'unpaired'")
    identity = reference_identity(model, adapter)
    if not force and has_reference_logprobs(artifact.path, identity):
        log.info("reference log-probs already present in %s (same reference)", artifact.path)
        return artifact.manifest[MANIFEST_KEY]
    t0 = time.perf_counter()
    if record_type == "unpaired":
        add_mismatched_sequences(artifact)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # keep shard row order: diffs and spot checks stay readable
    splits = list(artifact.manifest["splits"])
    # one pipeline (one reference actor) over every split; rows remember their split through their file path
    ds = ray.data.read_parquet([str(artifact.split_path(s)) for s in splits], file_extensions=["parquet"], include_paths=True)
    # The actor runs ``num_cpus`` torch threads but reserves at most all-but-one of the cluster's CPUs: an actor holding
    # every CPU starves the pipeline's own read/write tasks, and the run hangs (seen: precompute_cpus=2 on 2 CPUs).
    reserve = min(num_cpus, max(0.5, ray.cluster_resources().get("CPU", 0.0) - 1))
    ds = ds.map_batches(
        ReferenceScorer,
        fn_constructor_kwargs=dict(model_path=str(resolve_model(model).path), adapter=identity["adapter"], dtype=model.dtype, threads=max(1, int(num_cpus)),
                                   total_pairs=sum(artifact.splits.values()), record_type=record_type),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=reserve,
    )
    staged = artifact.path / ".reflogp.tmp"
    shutil.rmtree(staged, ignore_errors=True)
    ds.write_parquet(str(staged), partition_cols=["split"])
    for split in splits:
        src, new, old = artifact.split_path(split), staged / f"split={split}", artifact.path / f".{split}.old"
        if not new.is_dir():  # an empty split produces no rows and no folder
            new.mkdir(parents=True)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(src, old)
        os.replace(new, src)
        shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staged, ignore_errors=True)
    entry = {**identity, "columns": list(SCORED[record_type][1]), "seconds": round(time.perf_counter() - t0, 1), "created_at": time.time()}
    manifest = dict(artifact.manifest, **{MANIFEST_KEY: entry})
    tmp = artifact.path / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, artifact.path / "manifest.json")
    return entry
