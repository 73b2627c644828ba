"""Deterministic per-rank batches from a packed SFT artifact: the data cursor that makes resume exact.

Ray Data's ``streaming_split`` hands blocks to whichever worker asks first, so which rows a rank sees can change
between runs, which breaks bit-exact resume. Instead each rank streams its own rows straight from the split's
Parquet files (``StreamingShard``): rank r owns the contiguous global rows [r·N/world, (r+1)·N/world) (it opens
only the row groups that hold them), cut into blocks of ``block_rows``; every epoch is a seeded permutation of the
rank's blocks, consecutive ``buffer_blocks`` blocks form a shuffle buffer whose rows are permuted again
(``ShuffleBuffer``, also used for preference pairs), and an optimizer step's micro-batches are a pure function of
(seed, epoch, batch_in_epoch, rank). A worker holds at most two buffers of rows (O(buffer), not O(split));
resuming at (epoch, batch_in_epoch) reads only the buffer(s) that step needs. ``PackedShard`` is the in-memory
form (whole shard in a list) for small benchmarks and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch

from app.core.losses import IGNORE_INDEX

PACKED_COLUMNS = ("input_ids", "labels", "position_ids")


class ParquetRows:
    """Reads of chosen rows of a split's Parquet files (sorted by name = the split's global row order), row groups
    located from the footers; a read decodes only the row groups that hold wanted rows, ``batch_rows`` at a time,
    stopping after the last wanted row of each (memory: one batch plus the rows returned).

    ``split_dir``: a local folder or an fsspec URI (``s3://…``) reachable from the worker. List columns come back as
    int64 arrays (``as_lists``: Python lists), other columns as Python values."""

    def __init__(self, split_dir: str, columns: tuple[str, ...] | list[str] = PACKED_COLUMNS, batch_rows: int = 256,
                 as_lists: bool = False):
        import fsspec
        import pyarrow.parquet as pq

        self.fs, root = fsspec.core.url_to_fs(str(split_dir))
        self.files = sorted(f for f in self.fs.ls(root, detail=False) if f.endswith(".parquet"))
        if not self.files:
            raise FileNotFoundError(f"{split_dir}: no parquet files")
        self.columns, self.batch_rows, self.as_lists = list(columns), batch_rows, as_lists
        groups = []  # (file index, row group, first global row, rows)
        start = 0
        for k, f in enumerate(self.files):
            with self.fs.open(f, "rb") as fh:
                meta = pq.ParquetFile(fh).metadata
            for g in range(meta.num_row_groups):
                groups.append((k, g, start, meta.row_group(g).num_rows))
                start += meta.row_group(g).num_rows
        self.groups = groups
        self.total_rows = start

    def batches(self, columns: list[str] | None = None):
        """Every row group in order as Arrow record batches of ``batch_rows`` (a streaming pass over the split)."""
        import pyarrow.parquet as pq

        for k, f in enumerate(self.files):
            with self.fs.open(f, "rb") as fh:
                yield from pq.ParquetFile(fh).iter_batches(batch_size=self.batch_rows, columns=columns or self.columns)

    def read(self, indices) -> list[dict[str, Any]]:
        """The rows with these global indices, in the order given (repeats allowed)."""
        import pyarrow.parquet as pq

        wanted = np.unique(np.asarray(indices, dtype=np.int64))
        got: dict[int, dict[str, Any]] = {}
        pos = 0
        for k, g, first, n in self.groups:
            lo = pos
            pos = int(np.searchsorted(wanted, first + n))
            if pos == lo:
                continue
            need, j, row = wanted[lo:pos], 0, first
            with self.fs.open(self.files[k], "rb") as fh:
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=self.batch_rows, row_groups=[g], columns=self.columns):
                    end = row + batch.num_rows
                    if need[j] < end:
                        cols = {c: _column(batch.column(c)) for c in self.columns}
                        while j < len(need) and need[j] < end:
                            got[int(need[j])] = {c: get(int(need[j]) - row) for c, get in cols.items()}
                            j += 1
                    row = end
                    if j == len(need):
                        break
        if self.as_lists:
            got = {i: {c: v.tolist() if isinstance(v, np.ndarray) else v for c, v in r.items()} for i, r in got.items()}
        return [got[int(i)] for i in indices]


def _column(column):
    """An Arrow array → a row getter: list<int> rows as int64 numpy arrays (copied), other types as Python values."""
    import pyarrow as pa

    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        offsets, values = column.offsets.to_numpy(), column.values.to_numpy(zero_copy_only=False)
        return lambda i: values[offsets[i] : offsets[i + 1]].astype(np.int64)
    return column.to_pylist().__getitem__


class ShuffleBuffer:
    """A seeded epoch order over ``indices`` (global row numbers) that never holds more than two buffers of rows.

    The index list is cut into blocks of ``block_rows`` consecutive entries; epoch e visits the blocks in a seeded
    order (key, e); consecutive ``buffer_blocks`` blocks of that order form a buffer, read with ``read(indices)`` and
    permuted again (key, e, buffer). ``rows(e, lo, hi)``: the rows at positions [lo, hi) of epoch e, a pure function
    of (key, e, lo, hi), so a fresh reader at any position gives the same rows (exact resume).
    """

    def __init__(self, read, indices: np.ndarray, key: tuple[int, ...], block_rows: int = 256, buffer_blocks: int = 8):
        self.read, self.indices, self.key = read, np.asarray(indices, dtype=np.int64), key
        self.blocks = [(a, min(a + block_rows, len(self.indices))) for a in range(0, len(self.indices), block_rows)]
        self.buffer_blocks = buffer_blocks
        self._cache: dict[tuple[int, int], list] = {}

    def buffers(self, epoch: int) -> list[np.ndarray]:
        """The epoch's buffers as arrays of global row indices (before the in-buffer permutation)."""
        order = np.random.default_rng([*self.key, epoch]).permutation(len(self.blocks))
        blocks = [self.indices[slice(*self.blocks[i])] for i in order]
        return [np.concatenate(blocks[k : k + self.buffer_blocks]) for k in range(0, len(blocks), self.buffer_blocks)]

    def _buffer(self, epoch: int, b: int, indices: np.ndarray) -> list:
        if (epoch, b) not in self._cache:
            perm = np.random.default_rng([*self.key, epoch, b]).permutation(len(indices))
            rows = self.read(indices[perm])
            while len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[(epoch, b)] = rows
        return self._cache[(epoch, b)]

    def rows(self, epoch: int, lo: int, hi: int) -> list:
        out, start = [], 0
        for b, indices in enumerate(self.buffers(epoch)):
            if start < hi and lo < start + len(indices):
                out += self._buffer(epoch, b, indices)[max(lo - start, 0) : hi - start]
            start += len(indices)
            if start >= hi:
                break
        return out


class StreamingShard:
    """This rank's packed SFT rows streamed from ``ParquetRows``, with the step interface of ``PackedShard``.

    Rank ``rank`` owns the global rows [rank·N // world, (rank+1)·N // world) and visits them through a
    ``ShuffleBuffer`` keyed (seed, rank); step s of epoch e takes positions [s·m·a, (s+1)·m·a) (m = micro_batch_size,
    a = grad_accum). ``steps_per_epoch`` = (N // world) // (m·a), identical on every rank (each owns ≥ N // world rows).
    """

    def __init__(self, rows: ParquetRows, rank: int, world_size: int, micro_batch_size: int, grad_accum: int,
                 seed: int, block_rows: int = 256, buffer_blocks: int = 8):
        self.source, self.rank, self.world_size = rows, rank, world_size
        self.micro_batch_size, self.grad_accum, self.seed = micro_batch_size, grad_accum, seed
        self.total_rows = rows.total_rows
        lo, hi = rank * self.total_rows // world_size, (rank + 1) * self.total_rows // world_size
        self.buffer = ShuffleBuffer(rows.read, np.arange(lo, hi), (seed, rank), block_rows, buffer_blocks)

    @property
    def steps_per_epoch(self) -> int:
        return (self.total_rows // self.world_size) // (self.micro_batch_size * self.grad_accum)

    def step_rows(self, epoch: int, batch_in_epoch: int) -> list[list[dict[str, np.ndarray]]]:
        """The ``grad_accum`` micro-batches (lists of rows) of optimizer step ``batch_in_epoch`` of ``epoch``."""
        per_step = self.micro_batch_size * self.grad_accum
        rows = self.buffer.rows(epoch, batch_in_epoch * per_step, (batch_in_epoch + 1) * per_step)
        return [rows[k : k + self.micro_batch_size] for k in range(0, per_step, self.micro_batch_size)]


@dataclass
class PackedShard:
    """This rank's packed rows held in memory (rows ``i % world == rank``) and the step arithmetic over them."""

    rows: list[dict[str, np.ndarray]]
    total_rows: int
    world_size: int
    micro_batch_size: int
    grad_accum: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch, identical on every rank (based on the smallest shard)."""
        return (self.total_rows // self.world_size) // (self.micro_batch_size * self.grad_accum)

    def order(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.rows), generator=gen).tolist()

    def step_rows(self, epoch: int, batch_in_epoch: int) -> list[list[dict[str, np.ndarray]]]:
        """The ``grad_accum`` micro-batches (lists of rows) of optimizer step ``batch_in_epoch`` of ``epoch``."""
        per_step = self.micro_batch_size * self.grad_accum
        idx = self.order(epoch)[batch_in_epoch * per_step : (batch_in_epoch + 1) * per_step]
        rows = [self.rows[i] for i in idx]
        return [rows[k : k + self.micro_batch_size] for k in range(0, per_step, self.micro_batch_size)]


def shard_rows(rows: Iterable[dict[str, Any]], rank: int, world_size: int) -> tuple[list[dict[str, np.ndarray]], int]:
    """Keep rows ``i % world_size == rank`` (as int64 arrays); returns (kept rows, total rows seen)."""
    kept, total = [], 0
    for i, row in enumerate(rows):
        total += 1
        if i % world_size == rank:
            kept.append({k: np.asarray(row[k], dtype=np.int64) for k in PACKED_COLUMNS})
    return kept, total


def collate_packed(rows: list[dict[str, np.ndarray]], pad_id: int, objective: str = "sft") -> dict[str, torch.Tensor]:
    """Right-pad packed rows to the longest: input_ids/labels/position_ids [B, T].

    Padding gets label -100 and position_ids restarting at 0 (a separate "example" nothing attends into).
    ``objective='cpt'``: labels are the input ids (loss on every real token).
    """
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[b, :n] = torch.from_numpy(r["input_ids"])
        labels[b, :n] = torch.from_numpy(r["input_ids"] if objective == "cpt" else r["labels"])
        pos[b, :n] = torch.from_numpy(r["position_ids"])
        pos[b, n:] = torch.arange(width - n)
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "n_real_tokens": torch.tensor(sum(len(r["input_ids"]) for r in rows))}
