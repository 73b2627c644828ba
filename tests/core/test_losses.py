"""Golden tests for app.core.losses against a naive per-token loop, and for app.core.flops by hand."""

from __future__ import annotations

import math

import pytest
import torch

from app.core.flops import gpu_peak_flops, matmul_flops, mfu, mfu_fraction, train_flops_per_token
from app.core.losses import IGNORE_INDEX, causal_lm_loss, shift_packed_labels, token_cross_entropy


def naive_packed_loss(logits, labels, position_ids):
    """Independent reference: loop over every (b, t), predict t+1 unless ignored or a new example starts."""
    total, count = 0.0, 0
    B, T, _ = logits.shape
    for b in range(B):
        for t in range(T - 1):
            target = int(labels[b, t + 1])
            if target == IGNORE_INDEX or int(position_ids[b, t + 1]) == 0:
                continue
            logp = logits[b, t].double().log_softmax(-1)
            total += -float(logp[target])
            count += 1
    return total, count


def test_shift_packed_labels_by_hand():
    labels = torch.tensor([[-100, 5, 6, -100, 8, 9]])
    pos = torch.tensor([[0, 1, 2, 0, 1, 2]])
    # targets: t0->5, t1->6, t2->(next example starts: ignored), t3->8, t4->9, t5->ignored (end)
    assert shift_packed_labels(labels, pos).tolist() == [[5, 6, -100, 8, 9, -100]]
    assert shift_packed_labels(labels).tolist() == [[5, 6, -100, 8, 9, -100]]
    pos2 = torch.tensor([[0, 1, 2, 3, 4, 0]])
    assert shift_packed_labels(labels, pos2).tolist()[0][-2] == -100


def test_causal_lm_loss_matches_naive_loop():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 11, generator=gen)
    labels = torch.randint(0, 11, (3, 9), generator=gen)
    labels[torch.rand(3, 9, generator=gen) < 0.3] = IGNORE_INDEX
    pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1]] * 3)
    loss_sum, n = causal_lm_loss(logits, labels, pos)
    ref_sum, ref_n = naive_packed_loss(logits, labels, pos)
    assert int(n) == ref_n
    assert float(loss_sum) == pytest.approx(ref_sum, rel=1e-5)


def test_token_cross_entropy_uniform_logits_is_log_vocab():
    logits = torch.zeros(1, 4, 7)
    targets = torch.tensor([[1, 2, IGNORE_INDEX, 3]])
    loss_sum, n = token_cross_entropy(logits, targets)
    assert int(n) == 3
    assert float(loss_sum) / 3 == pytest.approx(math.log(7), rel=1e-6)


def test_all_ignored_gives_zero_tokens():
    loss_sum, n = token_cross_entropy(torch.randn(1, 3, 5), torch.full((1, 3), IGNORE_INDEX))
    assert int(n) == 0 and float(loss_sum) == 0.0


def test_flops_by_hand():
    # N=100, L=2, H=8, T=16: 6*100 + 12*2*8*16 = 600 + 3072
    assert train_flops_per_token(100, 2, 8, 16) == 3672
    # LoRA: 4N + 2*N_trainable + attention
    assert train_flops_per_token(100, 2, 8, 16, n_trainable=10) == 400 + 20 + 3072
    assert mfu(1e9, 100.0, 1e12) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        mfu(1.0, 1.0, 0.0)


def test_gpu_peaks_by_device_name_and_dtype():
    assert gpu_peak_flops("NVIDIA H200", "bfloat16") == 989e12 and gpu_peak_flops("NVIDIA H200", "float32") == 67e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12  # the more specific name wins over "H100"
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB", "float32") == 19.5e12
    assert gpu_peak_flops("NVIDIA A10G") == 70e12 and gpu_peak_flops("NVIDIA L4") == 121e12
    assert gpu_peak_flops("Some Future Accelerator") is None


def test_mfu_fraction_is_clipped_into_unit_interval():
    assert matmul_flops(2) == 16  # 2x2 @ 2x2: 4 outputs x 2 multiply-adds x 2 FLOPs
    assert mfu_fraction(1e9, 100.0, 1e12) == pytest.approx(0.1)
    assert mfu_fraction(1e9, 1e4, 1e12) == 1.0  # a kernel faster than the calibration matmul never reads > 1
    assert mfu_fraction(1e9, 0.0, 1e12) == 0.0
