"""Training FLOPs per token and model FLOPs utilisation (MFU), after PaLM (Chowdhery et al. 2022, appendix B).

A dense decoder with N matmul parameters does 2N FLOPs per token forward and 4N backward (2N for activation
gradients, 2N for weight gradients), plus attention scores 12·L·H·T per token (forward+backward, causal mask
not discounted, as in PaLM). When most weights are frozen (LoRA) the weight-gradient half is only spent on the
trainable parameters: 2N + 2N + 2N_trainable.
"""

from __future__ import annotations


def train_flops_per_token(
    n_params: int, n_layers: int, hidden_size: int, seq_len: int, n_trainable: int | None = None
) -> float:
    """FLOPs to train on one token: ``4N + 2N_trainable + 12·L·H·T`` (``n_trainable`` None means all: 6N + 12LHT).

    n_params should exclude the input embedding table (a lookup, not a matmul); seq_len is the attention context.
    """
    trainable = n_params if n_trainable is None else n_trainable
    return 4.0 * n_params + 2.0 * trainable + 12.0 * n_layers * hidden_size * seq_len


def mfu(flops_per_token: float, tokens_per_second: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the hardware peak (0..1)."""
    if peak_flops <= 0:
        raise ValueError("peak_flops must be positive")
    return flops_per_token * tokens_per_second / peak_flops


# Dense (no 2:4 sparsity) vendor-datasheet peaks in TFLOP/s: (bf16 tensor core, fp32 without TF32).
# Matched as substrings of torch.cuda.get_device_name(), most specific first.
GPU_PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("GH200", 989.0, 67.0),
    ("H200", 989.0, 67.0),
    ("H100 PCIe", 756.0, 51.0),
    ("H100", 989.0, 67.0),
    ("B200", 2250.0, 80.0),
    ("A100", 312.0, 19.5),
    ("A10G", 70.0, 31.2),
    ("A10", 125.0, 31.2),
    ("L40S", 362.0, 91.6),
    ("L4", 121.0, 30.3),
    ("RTX 4090", 165.0, 82.6),
    ("V100", 125.0, 15.7),  # fp16 tensor cores (no bf16)
    ("T4", 65.0, 8.1),  # fp16 tensor cores (no bf16)
    ("MI300X", 1307.0, 163.4),
)


def gpu_peak_flops(device_name: str, dtype: str = "bfloat16") -> float | None:
    """Peak FLOP/s of one GPU by its device name (``torch.cuda.get_device_name()``) and compute dtype
    ('bfloat16'/'float16' → tensor-core peak, 'float32' → FP32 peak); None for a GPU not in the table."""
    for key, half, single in GPU_PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return (single if dtype == "float32" else half) * 1e12
    return None


def matmul_flops(n: int) -> float:
    """FLOPs of one [n, n] @ [n, n] matmul: n² outputs, each n multiply-adds (2 FLOPs)."""
    return 2.0 * n**3


def mfu_fraction(flops_per_token: float, tokens_per_second: float, peak_flops: float) -> float:
    """MFU clipped into [0, 1]: a measured CPU peak is a lower bound of the true peak, so a kernel that beats the
    calibration matmul would otherwise read above 1."""
    return min(1.0, max(0.0, mfu(flops_per_token, tokens_per_second, peak_flops)))
