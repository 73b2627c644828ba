"""The run report: one markdown file with the stages, dataset manifest, loss curves, gate results and lineage.

Plots are PNGs beside ``report.md`` (matplotlib, Agg backend): loss curves of every training stage and the lineage
chain base model → dataset → adapter → registry version.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from app.pipeline.context import PipelineResult, RunContext

MANIFEST_KEYS = ("id", "record_type", "model_source", "max_length", "rows_read", "rows_accepted", "rows_rejected",
                 "exact_dups_removed", "near_dups_removed", "contaminated_flagged", "contaminated_dropped", "tokens",
                 "packing_efficiency", "splits")


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            text = f"{v:.4g}"
        else:
            text = json.dumps(v) if isinstance(v, (dict, list)) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def plot_losses(histories: dict[str, list[tuple[int, float]]], path: Path) -> Path | None:
    """One line per training stage: loss against optimizer step."""
    histories = {k: v for k, v in histories.items() if v}
    if not histories:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.2), squeeze=False)
    for ax, (name, points) in zip(axes[0], histories.items()):
        steps, losses = zip(*points)
        ax.plot(steps, losses, marker="o", markersize=2, alpha=0.5, label="per step")
        if len(points) >= 6:  # one packed batch per step is noisy: the trend is what shows learning
            smooth = moving_average(losses, 5)
            ax.plot(steps[len(steps) - len(smooth):], smooth, linewidth=2, label="mean of last 5")
            ax.legend(fontsize=8)
        ax.set_title(f"{name} loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` points (the first full window onwards)."""
    return [sum(values[i - window:i]) / window for i in range(window, len(values) + 1)]


def plot_lineage(nodes: list[tuple[str, str]], path: Path) -> Path:
    """A left-to-right chain of boxes: (kind, label) per node."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.6 * len(nodes), 1.6))
    ax.set_axis_off()
    for i, (kind, label) in enumerate(nodes):
        ax.text(i, 0, f"{kind}\n{label}", ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "#e8f0fe", "edgecolor": "#4a6fa5"})
        if i:
            ax.annotate("", xy=(i - 0.38, 0), xytext=(i - 0.62, 0), arrowprops={"arrowstyle": "->"})
    ax.set_xlim(-0.5, len(nodes) - 0.5)
    ax.set_ylim(-0.5, 0.5)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# eval metric prefix -> (label, format); the eval stage reports <prefix>_base / <prefix>_adapter (+ <prefix>_n)
EVAL_PAIRS = (("ppl", "held-out perplexity (GSM8K test answers)", "{:.3f}"),
              ("gsm8k_em", "GSM8K exact match", "{:.3f}"),
              ("bench_acc", "HH-RLHF preference accuracy", "{:.3f}"),
              ("refusal_rate", "red-team refusal rate", "{:.3f}"))


def base_vs_adapter(metrics: dict[str, float]) -> list[tuple[str, str, str, str]]:
    """Rows (metric, base, adapter, n) for every eval metric measured on both variants."""
    rows = []
    for prefix, label, fmt in EVAL_PAIRS:
        base, adapter = metrics.get(f"{prefix}_base"), metrics.get(f"{prefix}_adapter")
        if base is None or adapter is None:
            continue
        n = metrics.get("ppl_tokens" if prefix == "ppl" else f"{prefix}_n")
        unit = " tokens" if prefix == "ppl" else ""
        rows.append((label, fmt.format(base), fmt.format(adapter), f"{int(n)}{unit}" if n is not None else ""))
    return rows


def gate_row(g: dict[str, Any]) -> tuple[str, ...]:
    """One gate as (name, value [interval], threshold, n used, n needed (effect), result, reason)."""
    def num(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, (int, float)) else ("" if v is None else str(v))

    value = num(g.get("value"))
    if g.get("ci_low") is not None and g.get("ci_high") is not None:
        value += f" [{num(g['ci_low'])}, {num(g['ci_high'])}]"
    needed = "" if g.get("n_needed") is None else f"{g['n_needed']} ({num(g.get('mde'))})"
    status = g.get("status") or ("pass" if g.get("passed") else "fail")
    result = status.upper() if status in ("fail", "unreliable") else status
    return (str(g.get("name")), value, num(g.get("threshold")), num(g.get("n")), needed, result,
            str(g.get("metric", "")))


def write_report(ctx: RunContext, result: PipelineResult) -> Path:
    """Write ``report.md`` (+ PNGs) into the run's report folder and return its path."""
    out, o = ctx.report_dir, ctx.outputs
    parts = [f"# rayalign pipeline `{ctx.cfg.name}`: {'PASSED' if result.ok else 'STOPPED'}",
             f"Total {result.seconds / 60:.1f} min; model `{ctx.cfg.model.source}`; pipeline config hash "
             f"`{o.get('pipeline_config_hash', '')[:12]}` (resolved config: `pipeline.resolved.yaml`).",
             "## Stages",
             _table([(r.name, r.status, f"{r.seconds:.1f}", r.detail) for r in result.results],
                    ("stage", "status", "seconds", "detail"))]

    manifest = o.get("manifest")
    if manifest:
        parts += ["## Dataset", f"Artifact `{o.get('artifact_path', '')}`",
                  _table([(k, manifest[k]) for k in MANIFEST_KEYS if k in manifest], ("field", "value"))]
        hist = Path(o.get("artifact_path", "")) / "length_hist.png"
        if hist.is_file():
            shutil.copy(hist, out / "length_hist.png")
            parts.append("![sequence lengths](length_hist.png)")

    histories = o.get("loss_histories", {})
    if plot_losses(histories, out / "loss_curves.png"):
        rows = [(name, len(pts), f"{pts[0][1]:.4f}", f"{pts[-1][1]:.4f}",
                 *((f"{sum(p[1] for p in pts[:5]) / 5:.4f}", f"{sum(p[1] for p in pts[-5:]) / 5:.4f}")
                   if len(pts) >= 10 else ("", "")))
                for name, pts in histories.items() if pts]
        parts += ["## Training", _table(rows, ("stage", "steps", "first loss", "last loss", "mean first 5",
                                                "mean last 5")),
                  "![loss curves](loss_curves.png)"]

    rows = base_vs_adapter(o.get("eval_metrics") or {})
    if rows:
        parts += ["## Learning result (held-out)", "Same prompts, same tokens; base = the adapter switched off.",
                  _table(rows, ("metric", "base", "adapter", "n"))]

    gates = o.get("gates")
    if gates:
        parts += ["## Eval gates", f"Decision: **{'PASS' if o.get('gates_passed') else 'FAIL'}**",
                  "Suite sizes: *n used* = items the gate's interval rests on; *n needed* = items to detect the "
                  "suite's minimum detectable effect (in brackets) with 80% power at alpha 0.05. Details: "
                  f"`{o.get('eval_report', 'eval/gate_report.md')}`.",
                  _table([gate_row(g) for g in gates],
                         ("gate", "value [95% interval]", "threshold", "n used", "n needed (effect)", "result",
                          "why"))]

    lineage = o.get("lineage")
    if lineage:
        rows = [(k, v) for k, v in lineage.items() if k != "metrics"]
        parts += ["## Lineage", _table(rows, ("field", "value"))]
        nodes = [("base", str(lineage.get("base_sha", ""))[:10]), ("dataset", str(lineage.get("dataset_id", ""))[:14]),
                 ("adapter", str(lineage.get("method", ""))), ("registry", str(o.get("registry_version", "-")))]
        if o.get("sft_adapter_path"):  # DPO from the SFT adapter: show both trainings and both datasets
            nodes[1:1] = [("dataset", str(o.get("dataset_id", ""))[:14]), ("adapter", "sft")]
            nodes[3] = ("pairs", nodes[3][1])
        plot_lineage(nodes, out / "lineage.png")
        parts.append("![lineage](lineage.png)")

    if "sample_response" in o:
        parts += ["## Served sample", f"`POST {o.get('served_url', '')}/v1/chat/completions` model "
                  f"`{o.get('served_model', '')}`", f"> **prompt:** {ctx.cfg.serve.sample_prompt}",
                  "> **response:** " + str(o["sample_response"]).replace("\n", "\n> ")]
    path = out / "report.md"
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path
