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
