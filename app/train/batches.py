"""Deterministic per-rank batches from a packed SFT artifact: the data cursor that makes resume exact.

Ray Data's ``streaming_split`` hands blocks to whichever worker asks first, so which rows a rank sees can change
between runs, which breaks bit-exact resume. Instead every worker reads the split in order (Ray Data with
``preserve_order``) and keeps rows ``i % world == rank``; each epoch is a seeded permutation of those rows, and an
optimizer step's micro-batches are a pure function of (seed, epoch, batch_in_epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch

from app.core.losses import IGNORE_INDEX


@dataclass
class PackedShard:
    """This rank's packed rows and the step arithmetic over them."""

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
            kept.append({k: np.asarray(row[k], dtype=np.int64) for k in ("input_ids", "labels", "position_ids")})
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
