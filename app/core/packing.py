"""Padding-free sequence packing: best-fit-decreasing bin packing into ``max_length`` windows.

Each window is the concatenation of whole examples; ``position_ids`` restart at 0 at every example, which is what
lets transformers build a block-diagonal causal mask (with ``use_cache=False`` and no ``attention_mask``), so a
packed forward pass computes exactly the per-example losses. Best-fit-decreasing (Johnson 1973) uses at most
11/9·OPT + 6/9 bins.
"""

from __future__ import annotations

import bisect
from typing import Sequence

IGNORE_INDEX = -100


def pack_best_fit_decreasing(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Assign example indices to bins of capacity ``max_length``.

    Examples are placed longest first (ties by index, so the result is deterministic); each goes into the open bin
    whose remaining room is the smallest that still fits it, else into a new bin. O(n log n) via a sorted list of
    (room, bin) pairs. Returns bins as lists of example indices, each bin in placement order.
    """
    if max_length <= 0:
        raise ValueError("max_length must be positive")
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    bins: list[list[int]] = []
    rooms: list[tuple[int, int]] = []  # sorted (remaining room, bin index)
    for i in order:
        n = int(lengths[i])
        if n > max_length or n <= 0:
            raise ValueError(f"example {i} has length {n}, outside 1..{max_length}")
        pos = bisect.bisect_left(rooms, (n, -1))
        if pos < len(rooms):
            room, b = rooms.pop(pos)
            bins[b].append(i)
            if room - n > 0:
                bisect.insort(rooms, (room - n, b))
        else:
            bins.append([i])
            if max_length - n > 0:
                bisect.insort(rooms, (max_length - n, len(bins) - 1))
    return bins


def concat_packed(
    input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]
) -> tuple[list[int], list[int], list[int]]:
    """Concatenate examples of one bin into (input_ids, labels, position_ids), each of length sum(len_i).

    position_ids restart at 0 for every example: [0..n_0-1, 0..n_1-1, ...]. The first label of every example is
    set to -100: after the causal shift it would be predicted from the previous example's last token, a target an
    unpacked forward never has (so packed loss == sum of unpacked losses exactly).
    """
    ids: list[int] = []
    labs: list[int] = []
    pos: list[int] = []
    for x, y in zip(input_ids, labels):
        if len(x) != len(y):
            raise ValueError(f"input_ids and labels differ in length ({len(x)} vs {len(y)})")
        ids.extend(x)
        labs.extend([IGNORE_INDEX] + [int(v) for v in y[1:]] if len(y) else [])
        pos.extend(range(len(x)))
    return ids, labs, pos


def packing_efficiency(lengths: Sequence[int], n_bins: int, max_length: int) -> float:
    """Real tokens / tokens in ``n_bins`` fixed windows of ``max_length`` (1.0 = no padding would be needed)."""
    return float(sum(int(n) for n in lengths)) / float(max(n_bins, 1) * max_length)


def padded_efficiency(lengths: Sequence[int], max_length: int) -> float:
    """The naive figure: one example per row, padded to ``max_length``: real tokens / (n · max_length)."""
    return float(sum(int(n) for n in lengths)) / float(max(len(lengths), 1) * max_length)
