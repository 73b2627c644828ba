"""`rayalign plan [--config FILE] [key=value ...]`: per-GPU memory, trainable params, GPU choice, launch blocks.

    rayalign plan --config configs/plan/llama2-7b_lora.yaml
    rayalign plan --config configs/plan/llama2-7b_lora.yaml method=full hardware.gpu_types=[H100] --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from app.config.loader import load_config
from app.config.plan import PlanConfig

HELP = "estimate per-GPU training memory and choose GPU type/count and ZeRO stage (SkyPilot/ray-up blocks)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a YAML under configs/plan/ (default: built-in defaults)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. method=qlora seq_len=4096")
    p.add_argument("--json", action="store_true", help="print the whole plan as JSON")
    p.add_argument("--out", help="also write the SkyPilot and ray-up blocks to this YAML file")


def build_plan(cfg: PlanConfig):
    """Read the model config (never weights), count parameters with peft on the meta device, and plan."""
    from app.plan.model_stats import count_model_params, read_hf_config
    from app.plan.planner import plan_capacity

    model_dir = None
    if cfg.hf_config is None:
        from app.models.loader import resolve_model

        model_dir = resolve_model(cfg.model).path
    hf = read_hf_config(cfg.hf_config, model_dir)
    stats = count_model_params(hf, cfg.method, cfg.lora.r, cfg.lora.alpha, cfg.lora.target_modules)
    return plan_capacity(cfg, stats)


def plan_document(cfg: PlanConfig, plan) -> dict:
    """Everything the plan decided, as plain data (what --json prints)."""
    from app.plan.planner import ray_up_workers, skypilot_resources

    s = plan.stats
    doc = {
        "model": {"model_type": s.model_type, "total_params": s.total_params, "trainable_params": s.trainable_params,
                  "largest_layer_params": s.largest_layer_params},
        "method": cfg.method, "seq_len": cfg.seq_len, "micro_batch": cfg.micro_batch,
        "grad_checkpointing": cfg.grad_checkpointing, "per_gpu_type": [o.as_dict() for o in plan.per_gpu_type],
        "chosen": plan.chosen.as_dict() if plan.chosen else None,
    }
    if plan.chosen:
        doc["skypilot"] = skypilot_resources(plan.chosen, cfg.hardware)
        doc["ray_up"] = ray_up_workers(plan.chosen, cfg.hardware)
    return doc


def format_report(doc: dict) -> str:
    m = doc["model"]
    lines = [
        f"model: {m['model_type']}  {m['total_params'] / 1e9:.3f}B params  trainable ({doc['method']}): "
        f"{m['trainable_params'] / 1e6:,.1f}M  seq {doc['seq_len']} x micro-batch {doc['micro_batch']}"
        f"{'  grad-ckpt' if doc['grad_checkpointing'] else ''}",
        "",
        f"{'gpu':<10}{'n':>4}{'strategy':>9}{'weights':>9}{'grads':>8}{'optim':>8}{'activ':>8}{'total':>8}{'of':>7}"
        f"{'$/h':>8}  fits",
    ]
    for o in doc["per_gpu_type"]:
        lines.append(
            f"{o['gpu']:<10}{o['n_gpus']:>4}{o['strategy']:>9}{o['weights_gib']:>9.2f}{o['grads_gib']:>8.2f}"
            f"{o['optimizer_gib']:>8.2f}{o['activations_gib']:>8.2f}{o['per_gpu_gib']:>8.2f}{o['gpu_gib']:>7.0f}"
            f"{o['usd_per_hour']:>8.2f}  {'yes' if o['fits'] else 'NO'}"
        )
    lines.append("(GiB per GPU; $/h approximate on-demand list price of the whole fleet)")
    c = doc["chosen"]
    if c is None:
        lines.append("\nnothing fits: allow more GPUs (hardware.max_gpus), offload, checkpointing or a shorter seq_len")
        return "\n".join(lines)
    lines += [
        f"\nchosen: {c['n_gpus']} x {c['gpu']} ({c['nodes']} node(s)), {c['strategy']} (ZeRO-{c['zero_stage']}), "
        f"{c['per_gpu_gib']:.1f} of {c['gpu_gib']:.0f} GiB per GPU",
        "\n# SkyPilot (sky/*.yaml)",
        yaml.safe_dump(doc["skypilot"], sort_keys=False).rstrip(),
        "\n# ray-up worker group + Ray Train ScalingConfig (raycluster/*.yaml)",
        yaml.safe_dump(doc["ray_up"], sort_keys=False).rstrip(),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, PlanConfig, args.overrides)
    plan = build_plan(cfg)
    doc = plan_document(cfg, plan)
    print(json.dumps(doc, indent=2) if args.json else format_report(doc))
    if args.out and plan.chosen:
        Path(args.out).write_text(yaml.safe_dump({"skypilot": doc["skypilot"], "ray_up": doc["ray_up"]}, sort_keys=False))
    return 0 if plan.chosen else 1
