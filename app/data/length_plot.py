"""The token-length histogram PNG of an artifact (examples before packing, and packed windows)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def plot_length_histogram(path: str | Path, lengths: Sequence[int], max_length: int, title: str,
                          packed: Sequence[int] | None = None) -> Path:
    """Write a histogram of example lengths (and packed window lengths, if given) with the max_length line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = min(60, max(10, max_length // 16))
    ax.hist(list(lengths), bins=bins, range=(0, max_length), alpha=0.7, label=f"examples (n={len(lengths)})")
    if packed:
        ax.hist(list(packed), bins=bins, range=(0, max_length), alpha=0.6, label=f"packed windows (n={len(packed)})")
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
