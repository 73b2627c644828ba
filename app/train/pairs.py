"""Preference pairs for the reward and DPO loops: held-out split, deterministic per-rank step batches, eval shards.

Training pairs stream from the artifact's Parquet files: ``load_pair_splits`` makes one pass over the sequence
lengths (the ``max_length`` filter and token count) and keeps only the global indices of the training rows
(``PairRows``, 8 bytes a pair); ``PairShard`` reads a step's pairs through a seeded shuffle buffer
(app/train/batches.py ``ShuffleBuffer``), holding at most two buffers of pairs. The held-out pairs (capped by
``max_eval_pairs``) are read into plain column dicts (``{"chosen_input_ids": [[...], ...], ...}``), as are a step's
micro-batches. A step's rows are a pure function of (seed, epoch, batch_in_epoch, rank), which is what makes resume
exact (the SFT loop's ``StreamingShard`` plays the same role for packed rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from app.config.preference import PreferenceDataSpec
from app.core.logprobs import PackedSequences, concat_for_packed_forward
from app.core.preference_losses import PreferenceStats
from app.train.batches import ParquetRows, ShuffleBuffer

PAIR_COLUMNS = ["chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"]
UNPAIRED_ROW_COLUMNS = ["input_ids", "labels", "label"]  # KTO rows (record_type 'unpaired'), one completion each
ROW_COLUMNS = {"preference": PAIR_COLUMNS, "unpaired": UNPAIRED_ROW_COLUMNS}


@dataclass
class PairRows:
    """The training pairs of a split, not read yet: the split's reader, the global row indices kept (after the
    ``max_length`` filter, the hold-out and ``max_pairs``, in row order) and their total ``*input_ids`` tokens."""

    source: ParquetRows
    index: np.ndarray
    tokens: int


def n_rows(data: dict[str, list] | PairRows) -> int:
    if isinstance(data, PairRows):
        return int(len(data.index))
    return len(next(iter(data.values()))) if data else 0


def select_rows(data: dict[str, list] | PairRows, index) -> dict[str, list]:
    """Rows ``index`` (positions) of a column dict, or of ``PairRows`` (read from the files now), as a column dict."""
    index = list(index)
    if isinstance(data, PairRows):
        return to_columns(data.source.read(data.index[np.asarray(index, dtype=np.int64)]), data.source.columns)
    return {k: [v[i] for i in index] for k, v in data.items()}


def to_columns(rows: list[dict], columns: list[str]) -> dict[str, list]:
    """Row dicts → one column dict (the shape every loss function takes)."""
    return {c: [r[c] for r in rows] for c in columns}


def load_pair_splits(spec: PreferenceDataSpec, columns: list[str], seed: int,
                     record_type: str = "preference") -> tuple[PairRows, PairRows]:
    """(train pairs, held-out pairs), both streamed: eval is the artifact's eval split, or a seeded hold-out of train.

    Pairs longer than ``spec.max_length`` (either side) are dropped from both; ``max_pairs`` / ``max_eval_pairs`` cap sizes.
    ``record_type`` 'unpaired': KTO rows (one completion each) instead of pairs, filtered and capped the same way.
    Nothing but row indices is held: ``PairShard`` streams the training pairs, ``evaluate_pairs`` reads each held-out
    batch when it scores it (``select_rows``).
    """
    import pyarrow.parquet as pq

    from app.data.artifact import load_artifact
    from app.data.errors import DataError

    artifact = load_artifact(spec.artifact)
    if artifact.manifest["record_type"] != record_type:
        raise DataError(f"{artifact.path}: record_type is {artifact.manifest['record_type']!r}, need {record_type!r}")
    base = ROW_COLUMNS[record_type]
    wanted = list(dict.fromkeys(base + columns))
    sequences = [c for c in base if c.endswith("input_ids")]
    counted = [c for c in wanted if c.endswith("input_ids")]  # what pair_tokens counts

    def scan(split: str) -> tuple[ParquetRows, np.ndarray, np.ndarray]:
        """(reader, global indices of the rows within max_length, their token counts): one pass over the lengths."""
        source = ParquetRows(str(artifact.split_path(split)), wanted, as_lists=True)
        with source.fs.open(source.files[0], "rb") as fh:
            names = pq.ParquetFile(fh).schema_arrow.names
        missing = [c for c in wanted if c not in names]
        if missing:
            raise DataError(f"{artifact.path}/{split}: missing columns {missing}")
        longest, tokens = [], []
        for batch in source.batches(list(dict.fromkeys(sequences + counted))):
            lengths = {c: np.diff(batch.column(c).offsets.to_numpy()) for c in batch.schema.names}
            longest.append(np.max([lengths[c] for c in sequences], axis=0))
            tokens.append(np.sum([lengths[c] for c in counted], axis=0))
        longest = np.concatenate(longest) if longest else np.empty(0, np.int64)
        tokens = np.concatenate(tokens) if tokens else np.empty(0, np.int64)
        keep = np.flatnonzero(longest <= spec.max_length) if spec.max_length else np.arange(len(longest))
        return source, keep, tokens[keep]

    source, keep, tokens = scan(spec.train_split)
    train_pos = np.arange(len(keep))
    cap = slice(None, spec.max_eval_pairs)  # the first max_eval_pairs held-out pairs (None: all)
    if spec.eval_split in artifact.manifest["splits"]:
        eval_source, eval_keep, eval_tokens = scan(spec.eval_split)
        held_out = PairRows(eval_source, eval_keep[cap], int(eval_tokens[cap].sum()))
    else:
        n = len(keep)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        n_eval = int(round(n * spec.eval_fraction))
        held = np.asarray(order[:n_eval], dtype=np.int64)[cap]
        held_out = PairRows(source, keep[held], int(tokens[held].sum()))
        train_pos = np.asarray(sorted(order[n_eval:]), dtype=np.int64)
    if spec.max_pairs:
        train_pos = train_pos[: spec.max_pairs]
    if len(train_pos) == 0:
        raise DataError(f"{artifact.path}: no training pairs left (split {spec.train_split!r}, max_length {spec.max_length})")
    return PairRows(source, keep[train_pos], int(tokens[train_pos].sum())), held_out


class PairShard:
    """This rank's view of the training pairs: every epoch a seeded order of all pairs (``ShuffleBuffer`` keyed by
    the seed alone, so every rank sees the same order); optimizer step s takes the slice [s·P, (s+1)·P) (P = micro ·
    accum · world), this rank keeps every world-th pair of it and cuts that into ``grad_accum`` micro-batches.
    Identical step counts on every rank. ``data``: ``PairRows`` (streamed) or a column dict held in memory."""

    def __init__(self, data: PairRows | dict[str, list], rank: int, world: int, micro_batch_size: int, grad_accum: int,
                 seed: int, block_rows: int = 256, buffer_blocks: int = 8):
        self.rank, self.world, self.micro_batch_size, self.grad_accum, self.seed = rank, world, micro_batch_size, grad_accum, seed
        self.n = n_rows(data)
        if isinstance(data, PairRows):
            read, index, self.columns = data.source.read, data.index, data.source.columns
        else:
            def read(idx):
                return [{c: v[int(i)] for c, v in data.items()} for i in idx]

            index, self.columns = np.arange(self.n), list(data)
        self.buffer = ShuffleBuffer(read, index, (seed,), block_rows, buffer_blocks)

    @property
    def per_step(self) -> int:
        return self.micro_batch_size * self.grad_accum * self.world

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.per_step

    def step_rows(self, epoch: int, batch_in_epoch: int) -> list[dict[str, list]]:
        """The ``grad_accum`` micro-batches (column dicts) of this rank for optimizer step ``batch_in_epoch``."""
        rows = self.buffer.rows(epoch, batch_in_epoch * self.per_step, (batch_in_epoch + 1) * self.per_step)
        mine = rows[self.rank :: self.world]
        m = self.micro_batch_size
        return [to_columns(mine[k : k + m], self.columns) for k in range(0, len(mine), m)]


def eval_batches(n: int, batch_size: int, rank: int, world: int) -> list[tuple[list[int], float]]:
    """This rank's held-out batches as (row indices, weight): rows ``i % world == rank``, the SAME number of batches on
    every rank (sharded models run collectives in forward), a rank that runs out repeats row ``rank`` with weight 0."""
    mine = list(range(rank, n, world))
    count = -(-(-(-n // world)) // batch_size) if n else 0  # ceil(ceil(n / world) / batch_size)
    out = []
    for b in range(count):
        idx = mine[b * batch_size : (b + 1) * batch_size]
        out.append((idx, 1.0) if idx else ([min(rank, n - 1)], 0.0))
    return out


def pack_pairs(rows: dict[str, list], with_labels: bool) -> PackedSequences:
    """Chosen then rejected sequences of a batch of pairs in one padding-free row (``with_labels``: DPO's response labels)."""
    ids = rows["chosen_input_ids"] + rows["rejected_input_ids"]
    labels = rows["chosen_labels"] + rows["rejected_labels"] if with_labels else None
    return concat_for_packed_forward(ids, labels)


def pair_tokens(rows: dict[str, list] | PairRows) -> int:
    """Tokens a batch puts through the model: every ``*input_ids`` column (chosen + rejected; KTO: row + KL sequence)."""
    if isinstance(rows, PairRows):
        return rows.tokens
    return sum(len(x) for c, seqs in rows.items() if c.endswith("input_ids") for x in seqs)


def stat_metrics(stats: PreferenceStats, score_name: str, prefix: str) -> dict[str, float]:
    """{prefix}loss, accuracy, margin, {score_name}/chosen, {score_name}/rejected."""
    return {
        f"{prefix}loss": stats.loss, f"{prefix}accuracy": stats.accuracy, f"{prefix}margin": stats.margin,
        f"{prefix}{score_name}/chosen": stats.chosen, f"{prefix}{score_name}/rejected": stats.rejected,
    }


@torch.no_grad()
def evaluate_pairs(
    loss_fn: Callable[[dict[str, list]], tuple[torch.Tensor, PreferenceStats]],
    model: torch.nn.Module, data: dict[str, list] | PairRows, batch_size: int, rank: int, world: int, score_name: str,
) -> dict[str, float]:
    """Pair-weighted mean held-out loss/accuracy/margin/scores over ALL held-out pairs, prefixed ``eval/``.

    Each rank scores its shard (``eval_batches``: same batch count everywhere, so sharded models stay in lockstep);
    the sums are all-reduced, so every rank returns the same numbers. ``model`` is put in eval mode and back.
    """
    import torch.distributed as dist

    model.eval()
    sums = torch.zeros(6, dtype=torch.float64)  # loss, accuracy, margin, chosen, rejected, pairs
    for idx, weight in eval_batches(n_rows(data), batch_size, rank, world):
        _, s = loss_fn(select_rows(data, idx))
        w = weight * len(idx)
        sums += torch.tensor([s.loss * w, s.accuracy * w, s.margin * w, s.chosen * w, s.rejected * w, w], dtype=torch.float64)
    model.train()
    if dist.is_available() and dist.is_initialized():
        from app.train.checkpoint import collective_device

        sums = sums.to(collective_device())  # NCCL reduces CUDA tensors only
        dist.all_reduce(sums)
    n = max(float(sums[5]), 1.0)
    stats = PreferenceStats(*(float(v) / n for v in sums[:5]))
    return stat_metrics(stats, score_name, "eval/") | {"eval/pairs": float(sums[5])}


def pair_step(strat, micro_batches: list[dict[str, list]], loss_fn, poison: bool = False) -> tuple[list[float], int]:
    """Forward + backward of one optimizer step's micro-batches (``strat`` accumulates, syncing on the last).

    Returns this rank's mean [loss, accuracy, margin, chosen, rejected] over the micro-batches and the step's token
    count. ``poison``: make the loss NaN (the fault drill for fail-fast).
    """
    stats, tokens = [], 0
    for i, rows in enumerate(micro_batches):
        loss, s = loss_fn(rows)
        if poison:
            loss = loss * float("nan")
        strat.backward(loss, last=i == len(micro_batches) - 1)
        stats.append([float(loss.detach()), s.accuracy, s.margin, s.chosen, s.rejected])
        tokens += pair_tokens(rows)
    return [sum(col) / len(stats) for col in zip(*stats)], tokens


def pair_metrics(step: int, means: list[float], score_name: str) -> dict[str, float]:
    """A step's train/* figures from the rank-averaged [loss, accuracy, margin, chosen, rejected] (plus ``loss``)."""
    stats = PreferenceStats(*means)
    return {"step": step, "loss": stats.loss, **stat_metrics(stats, score_name, "train/")}
