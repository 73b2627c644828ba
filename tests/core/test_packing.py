"""Best-fit-decreasing packing: hand-worked golden, invariants, and loss-exactness of a packed forward pass."""

from __future__ import annotations

import random

import pytest

from app.core.packing import IGNORE_INDEX, concat_packed, pack_best_fit_decreasing, packing_efficiency, padded_efficiency


def test_bfd_hand_worked_example():
    # decreasing: 5(i0) 4(i1) 3(i2) 3(i3) 2(i4) 1(i5), capacity 8
    # 5 -> new bin A (room 3); 4 -> new B (room 4); 3 -> best fit A (room 0); 3 -> B (room 1);
    # 2 -> nothing fits -> new C (room 6); 1 -> tightest fit B (room 0)
    assert pack_best_fit_decreasing([5, 4, 3, 3, 2, 1], 8) == [[0, 2], [1, 3, 5], [4]]


def test_bfd_invariants_random():
    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(2000)]
    bins = pack_best_fit_decreasing(lengths, 512)
    flat = sorted(i for b in bins for i in b)
    assert flat == list(range(len(lengths)))  # every example exactly once
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    lower_bound = -(-sum(lengths) // 512)
    assert len(bins) <= 11 / 9 * lower_bound + 1  # BFD guarantee vs OPT >= lower bound
    assert packing_efficiency(lengths, len(bins), 512) > padded_efficiency(lengths, 512)


def test_bfd_rejects_too_long():
    with pytest.raises(ValueError, match="outside"):
        pack_best_fit_decreasing([3, 9], 8)


def test_concat_resets_positions_and_masks_boundaries():
    ids, labels, pos = concat_packed([[1, 2, 3], [4, 5]], [[IGNORE_INDEX, 2, 3], [4, 5]])
    assert ids == [1, 2, 3, 4, 5]
    assert pos == [0, 1, 2, 0, 1]
    assert labels == [IGNORE_INDEX, 2, 3, IGNORE_INDEX, 5]


def test_efficiency_figures():
    assert packing_efficiency([4, 4], 1, 8) == 1.0
    assert padded_efficiency([4, 4], 8) == 0.5


def test_packed_loss_equals_sum_of_unpacked_losses(tiny_model_dir):
    """Loss-exact packing: one forward over a packed window (position_ids resets, use_cache=False, no attention
    mask) gives the same summed token CE as separate forwards of each example (float64, tolerance 1e-5)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64, attn_implementation="sdpa").eval()
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    examples = []
    for n in (7, 12, 5, 9):
        ids = torch.randint(3, vocab, (n,), generator=gen).tolist()
        labels = [IGNORE_INDEX if i < n // 3 else x for i, x in enumerate(ids)]  # prompt part masked
        examples.append((ids, labels))

    def summed_ce(logits, labels):
        return F.cross_entropy(logits[0, :-1], torch.tensor(labels[1:]), ignore_index=IGNORE_INDEX, reduction="sum")

    with torch.no_grad():
        unpacked = sum(summed_ce(model(torch.tensor([x]), use_cache=False).logits, y) for x, y in examples)
        ids, labels, pos = concat_packed([e[0] for e in examples], [e[1] for e in examples])
        packed_logits = model(torch.tensor([ids]), position_ids=torch.tensor([pos]), use_cache=False).logits
        packed = summed_ce(packed_logits, labels)
        leaky = summed_ce(model(torch.tensor([ids]), use_cache=False).logits, labels)  # no resets: examples attend to each other
    assert abs(packed.item() - unpacked.item()) <= 1e-5
    assert abs(leaky.item() - unpacked.item()) > 1e-3  # the test can fail: without resets the loss differs
