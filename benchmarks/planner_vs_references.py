"""Planner accuracy: app.core.memory against the ZeRO paper's Table 1 and DeepSpeed's own estimators; peft's
LoRA count on a meta-device Llama-2-7B against the hand formula. Prints ratios; writes JSON.

    python benchmarks/planner_vs_references.py      # -> benchmarks/results/planner_vs_references.json
"""

from __future__ import annotations

import json
from pathlib import Path

from app.core.memory import ZERO_PAPER, model_state_bytes

GB, GIB = 1e9, 2**30


def main() -> dict:
    rows = []
    for stage, paper in [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.88)]:
        ours = model_state_bytes(7.5e9, stage=stage, n_gpus=64, accounting=ZERO_PAPER).total / GB
        rows.append({"check": f"ZeRO Table 1 stage {stage} (7.5B, 64 GPUs, K=12)", "reference_gb": paper,
                     "ours_gb": round(ours, 3), "ratio": round(ours / paper, 4)})

    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    for params, largest, gpus, nodes in [(7.5e9, 2e8, 8, 8), (6.74e9, 32000 * 4096, 8, 1), (70e9, 32000 * 8192, 8, 4)]:
        n = gpus * nodes
        for offload in (False, True):
            _, ds = estimate_zero2_model_states_mem_needs(int(params), gpus, nodes, cpu_offload=offload)
            ours = model_state_bytes(params, stage=2, n_gpus=n, offload="optimizer" if offload else "none").total
            rows.append({"check": f"DeepSpeed ZeRO-2 {params / 1e9:g}B x{n} offload={offload}",
                         "reference_gib": round(ds / GIB, 3), "ours_gib": round(ours / GIB, 3), "ratio": round(ours / ds, 4)})
        for off_opt, off_param in [(False, False), (True, False), (True, True)]:
            _, ds, _ = estimate_zero3_model_states_mem_needs(int(params), int(largest), gpus, nodes, off_opt, off_param)
            mode = "optimizer+params" if off_param else "optimizer" if off_opt else "none"
            ours = model_state_bytes(params, stage=3, n_gpus=n, offload=mode, largest_layer_params=largest).total
            rows.append({"check": f"DeepSpeed ZeRO-3 {params / 1e9:g}B x{n} offload={mode}",
                         "reference_gib": round(ds / GIB, 3), "ours_gib": round(ours / GIB, 3), "ratio": round(ours / ds, 4)})

    from app.plan.model_stats import count_model_params, read_hf_config

    cfg = read_hf_config({"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 11008,
                          "num_attention_heads": 32, "vocab_size": 32000}, None)
    stats = count_model_params(cfg, "lora", lora_r=8, target_modules="all-linear")
    hand = 32 * (4 * 8 * 8192 + 2 * 8 * (4096 + 11008) + 8 * (11008 + 4096))
    rows.append({"check": "Llama-2-7B LoRA r=8 all-linear trainable (peft on meta)", "reference": hand,
                 "ours": stats.trainable_params, "ratio": stats.trainable_params / hand})
    worst = max(abs(r["ratio"] - 1) for r in rows)
    for r in rows:
        print(f"{r['check']:<60} ratio {r['ratio']:.4f}")
    print(f"worst deviation: {worst:.2%}")
    out = {"rows": rows, "worst_relative_deviation": worst}
    path = Path(__file__).parent / "results" / "planner_vs_references.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
