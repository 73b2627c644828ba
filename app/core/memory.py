"""Per-GPU training memory: model states (weights, gradients, optimizer) and activations. Pure arithmetic.

Model states follow the ZeRO paper (Rajbhandari et al. 2020, §3.1 and §5, Table 1): mixed-precision Adam keeps
2 bytes/param of 16-bit weights, 2 of 16-bit gradients and K=12 of fp32 optimizer state (master weights, momentum,
variance). ZeRO stage 1 partitions the optimizer state over N data-parallel ranks, stage 2 also the gradients,
stage 3 (= FSDP full sharding) also the weights:

    stage 0 (DDP):  (2 + 2 + K) Ψ          stage 2:  2Ψ + (2 + K) Ψ / N
    stage 1:        (2 + 2) Ψ + K Ψ / N    stage 3:  (2 + 2 + K) Ψ / N

Two accountings are provided. ``ZERO_PAPER`` is exactly the paper's. ``DEEPSPEED`` is what DeepSpeed's own
estimators (``estimate_zero2/3_model_states_mem_needs``) charge at run time: an extra fp32 gradient partition
(4 bytes) next to the optimizer state, 16-bit gradients reduce-scattered straight into it under stage 3, and the
largest layer's gathered 16-bit weights + gradients (4 bytes/param) under stage 3. The planner uses ``DEEPSPEED``.

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", §4.1
(eq. 1: ``s·b·h·(34 + 5·a·s/h)`` bytes per GPT layer with 16-bit activations), generalised term by term to
RMSNorm/SwiGLU/GQA decoders, with memory-efficient attention (no ``a·s²`` score matrix kept) and full
per-layer gradient checkpointing (only each layer's input is kept; one layer is recomputed at a time).

All sizes are bytes (floats); no I/O, no framework imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Stage = Literal[0, 1, 2, 3]
Offload = Literal["none", "optimizer", "optimizer+params"]

NF4_BYTES_PER_PARAM = (4 + 8 / 64 + 32 / (64 * 256)) / 8
"""QLoRA NF4 with double quantisation (Dettmers et al. 2023, §3): 4-bit codes, an 8-bit absmax per 64-weight block,
an fp32 second-level constant per 256 blocks = 4.127 bits/param."""


@dataclass(frozen=True)
class Accounting:
    """Bytes per trainable parameter for mixed-precision Adam, and what ZeRO stage 3 materialises."""

    weight: float = 2.0
    grad: float = 2.0
    optimizer: float = 12.0  # K in the ZeRO paper: fp32 master weights + Adam momentum + variance
    fp32_grad: float = 0.0  # an fp32 gradient partition held beside the optimizer state (DeepSpeed)
    stage3_fp16_grads: bool = True  # stage 3 keeps a 16-bit gradient partition (False: reduced into the fp32 one)
    stage3_gather_bytes: float = 0.0  # bytes/param of the largest layer gathered whole under stage 3


ZERO_PAPER = Accounting()
DEEPSPEED = Accounting(fp32_grad=4.0, stage3_fp16_grads=False, stage3_gather_bytes=4.0)


@dataclass(frozen=True)
class ModelStates:
    """Per-GPU bytes of model states; ``cpu`` is what offload moves to host memory (per GPU)."""

    weights: float
    grads: float
    optimizer: float
    cpu: float = 0.0

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer


def model_state_bytes(
    trainable: float,
    frozen: float = 0.0,
    *,
    stage: Stage = 0,
    n_gpus: int = 1,
    offload: Offload = "none",
    accounting: Accounting = DEEPSPEED,
    frozen_bytes_per_param: float = 2.0,
    largest_layer_params: float = 0.0,
) -> ModelStates:
    """Per-GPU model-state bytes for ``trainable`` + ``frozen`` parameters under ZeRO ``stage`` on ``n_gpus``.

    Frozen parameters (a LoRA/QLoRA base) carry only weights at ``frozen_bytes_per_param`` (2 for bf16,
    ``NF4_BYTES_PER_PARAM`` for QLoRA) and are sharded only by stage 3. ``offload="optimizer"`` moves optimizer
    state and gradient partitions to the CPU (ZeRO-Offload: gradients stream to the host, the step runs there);
    ``"optimizer+params"`` (stage 3 only) also moves the weight partition.
    """
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0-3, got {stage}")
    if n_gpus < 1:
        raise ValueError(f"n_gpus must be >= 1, got {n_gpus}")
    if offload == "optimizer+params" and stage != 3:
        raise ValueError("parameter offload needs ZeRO stage 3")
    a, n = accounting, float(n_gpus)
    optim = (a.optimizer + a.fp32_grad) * trainable
    grads = a.grad * trainable
    weights = a.weight * trainable + frozen_bytes_per_param * frozen
    if stage >= 1:
        optim /= n
    if stage >= 2:
        grads /= n
    if stage == 3:
        weights /= n
        if not a.stage3_fp16_grads:
            grads = 0.0
    cpu = 0.0
    if offload != "none":
        cpu, optim, grads = optim + grads, 0.0, 0.0
    if offload == "optimizer+params":
        cpu, weights = cpu + weights, 0.0
    if stage == 3:
        weights += a.stage3_gather_bytes * largest_layer_params
    return ModelStates(weights=weights, grads=grads, optimizer=optim, cpu=cpu)


@dataclass(frozen=True)
class TransformerShape:
    """The sizes that set activation memory: h hidden, L layers, a heads, kv heads, I MLP width, V vocab."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    kv_heads: int | None = None  # None: multi-head attention (kv_heads == heads)
    gated_mlp: bool = True  # SwiGLU (gate, up, down) vs a GPT-style two-matrix MLP
    dropout: bool = False  # GPT-style dropout masks (1 byte per element)


def layer_activation_bytes(shape: TransformerShape, seq_len: int, micro_batch: int, flash_attention: bool = True,
                           bytes_per_value: float = 2.0) -> float:
    """Bytes one transformer layer keeps for its backward pass, for a ``[micro_batch, seq_len]`` batch.

    Term by term (16-bit values, ``sbh = s·b·h``): two norm inputs 4sbh; attention: projection input 2sbh, Q 2sbh,
    K and V 2·2sbh·(kv/a), output-projection input 2sbh, scores (unless memory-efficient attention) softmax 2as²b
    (+ dropout mask as²b and output 2as²b); MLP: input 2sbh + 8sbI gated (gate, up, act, product) or 4sbI
    (fc1 output, activation); dropout masks sbh after attention and after the MLP. For GPT (MHA, I = 4h,
    dropout, no flash) this is exactly Korthikanti et al. eq. 1: sbh·(34 + 5as/h).
    """
    s, b, h, a = float(seq_len), float(micro_batch), float(shape.hidden), float(shape.heads)
    kv = float(shape.kv_heads or shape.heads)
    v, sbh = bytes_per_value, s * b * h
    norms = 2 * v * sbh
    attention = v * sbh + v * sbh + 2 * v * sbh * kv / a + v * sbh
    if flash_attention:
        attention += 4 * a * s * b  # fp32 log-sum-exp per query row: all memory-efficient attention keeps
    else:
        attention += v * a * s * s * b + ((1 + v) * a * s * s * b if shape.dropout else 0.0)
    mlp = v * sbh + (4 if shape.gated_mlp else 2) * v * s * b * shape.intermediate
    masks = 2 * sbh if shape.dropout else 0.0
    return norms + attention + mlp + masks


def activation_bytes(shape: TransformerShape, seq_len: int, micro_batch: int, grad_checkpointing: bool = False,
                     flash_attention: bool = True, bytes_per_value: float = 2.0) -> float:
    """Activation bytes per GPU for one micro-batch: all layers (or checkpoints + one recomputed layer) + logits.

    Checkpointing keeps each layer's input (``bytes_per_value``·sbh per layer) and, during backward, one layer's
    full activations. The head keeps the final norm input and the logits: 16-bit logits, their fp32 copy for the
    loss and its fp32 gradient, (2 + 4 + 4)·s·b·V bytes.
    """
    s, b = float(seq_len), float(micro_batch)
    per_layer = layer_activation_bytes(shape, seq_len, micro_batch, flash_attention, bytes_per_value)
    if grad_checkpointing:
        body = shape.layers * bytes_per_value * s * b * shape.hidden + per_layer
    else:
        body = shape.layers * per_layer
    head = bytes_per_value * s * b * shape.hidden + (2 + 4 + 4) * s * b * shape.vocab
    return body + head
