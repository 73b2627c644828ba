"""The one output layout every method writes, and the driver's copy out of the final checkpoint.

    <final checkpoint>/adapter/   LoRA / QLoRA: peft ``save_pretrained`` folder (vLLM/peft-loadable)
    <final checkpoint>/model/     full weights: ``save_pretrained`` of the whole model
      + tokenizer files (reward models and full weights: load_reward_model and serving need them)
      + rayalign_lineage.json     (app/models/adapter.py: base, data, config hash, method, LoRA shape, metrics)

The driver copies that folder to ``output.dir`` (default ``<run storage>/<run name>/<adapter|model>``) and adds the
loss curve; a sweep trial's model is copied from its last reported checkpoint the same way.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from app.config.common import TrainingConfig
from app.models.adapter import write_lineage

OUTPUT_KINDS = ("adapter", "model")
LINEAGE_METRICS = ("loss", "step", "tokens_per_s")


def output_kind(cfg: TrainingConfig) -> str:
    return "model" if cfg.method == "full" else "adapter"


def lineage_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """What the lineage records: final loss, steps, throughput, and every held-out eval figure before/after."""
    out = {"final_loss": metrics.get("loss"), "steps": metrics.get("step"), "tokens_per_s": metrics.get("tokens_per_s")}
    out |= {k: v for k, v in metrics.items() if k.startswith(("eval/", "eval_before/"))}
    return {k: (float(v) if v is not None else None) for k, v in out.items()}


def write_output(strat, cfg: TrainingConfig, method: str, folder: Path, loop_config: dict[str, Any], metrics: dict[str, Any],
                 rank: int, tokenizer=None, lineage_extra: dict[str, Any] | None = None) -> Path | None:
    """Collective (gathers full trainable tensors from every strategy); rank 0 writes ``folder/<adapter|model>``.

    The strategy may wrap the HF/peft model in a scoring module (reward, DPO): its ``model.`` prefix is stripped so
    the saved names are the HF/peft model's own.
    """
    state = strat.full_trainable_state()
    if rank != 0:
        return None
    module = strat.module
    wrapped = not hasattr(module, "save_pretrained")
    if wrapped:
        module = module.model
        state = {k.removeprefix("model."): v for k, v in state.items()}
    out = Path(folder) / output_kind(cfg)
    module.save_pretrained(out, state_dict=state)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    lora = None if cfg.method == "full" else {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "target_modules": cfg.lora.target_modules,
                                              "layers_to_transform": cfg.lora.layers_to_transform}
    lineage_method = method if method != "sft" else cfg.method if cfg.train.objective == "sft" else f"cpt-{cfg.method}"
    write_lineage(out, base_model_source=cfg.model.source, base_sha=loop_config.get("base_sha", ""),
                  dataset_id=loop_config.get("dataset_id", ""), config_hash=loop_config["config_hash"], method=lineage_method,
                  lora=lora, metrics=lineage_metrics(metrics), extra=lineage_extra)
    return out


def export_output(checkpoint, out_dir: str | Path) -> Path:
    """Copy the final checkpoint's ``adapter/`` or ``model/`` folder to ``out_dir`` (atomically: temp copy + rename).

    RuntimeError when the checkpoint is not a final one (a run stopped early has none).
    """
    out = Path(out_dir).expanduser()
    with checkpoint.as_directory() as folder:
        found = [Path(folder) / k for k in OUTPUT_KINDS if (Path(folder) / k).is_dir()]
        if not found:
            raise RuntimeError(f"checkpoint {checkpoint.path} has no adapter/ or model/ folder (run did not finish)")
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(found[0], tmp)
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    return out
