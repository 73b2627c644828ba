"""The token-length histogram PNG of an artifact (examples before packing, and packed windows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_length_histogram(path: str | Path, lengths: np.ndarray, max_length: int, title: str,
                          packed: np.ndarray | None = None) -> Path:
    """Write a histogram of example lengths (and packed window lengths, if given) with the max_length line.

    ``lengths`` / ``packed``: counts per token length, shape [max_length + 1] (index = length), as the pipeline's
    per-batch aggregates sum them, so no list of every length is needed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = min(60, max(10, max_length // 16))
    x = np.arange(max_length + 1)
    lengths = np.asarray(lengths)
    ax.hist(x, weights=lengths, bins=bins, range=(0, max_length), alpha=0.7, label=f"examples (n={int(lengths.sum())})")
    if packed is not None and np.ndim(packed) and np.asarray(packed).sum():
        packed = np.asarray(packed)
        ax.hist(x, weights=packed, bins=bins, range=(0, max_length), alpha=0.6,
                label=f"packed windows (n={int(packed.sum())})")
    ax.axvline(max_length, color="k", linestyle="--", linewidth=1, label=f"max_length={max_length}")
    ax.set_xlabel("tokens")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
