"""PNG of a PPO run: mean reward (± std) and sequence KL per iteration, with the KL target."""

from __future__ import annotations

from pathlib import Path


def plot_history(history: list[dict], path: str | Path, target_kl: float | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    it = [h["iteration"] for h in history]
    mean = [h["reward_mean"] for h in history]
    std = [h["reward_std"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(it, mean, marker="o", label="reward mean")
    ax1.fill_between(it, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    for key, style in (("exact_match", "s--"), ("format_ok", "^:"), ("tool_call_rate", "d-.")):
        if all(key in h for h in history):
            ax1.plot(it, [h[key] for h in history], style, alpha=0.7, label=f"{key} (fraction)")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("reward")
    ax1.legend(fontsize=8)
    ax1.set_title("reward per iteration")
    ax2.plot(it, [h["kl"] for h in history], marker="o", color="tab:red", label="KL(pi||ref), nats/seq")
    if target_kl is not None:
        ax2.axhline(target_kl, ls="--", color="gray", label=f"target {target_kl}")
    ax2.set_xlabel("iteration")
    ax2.set_title("KL to reference")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
