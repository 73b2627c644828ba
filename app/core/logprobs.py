"""Per-sequence log-probabilities of label tokens under a causal LM: the quantity DPO, IPO and PPO compare.

Pure tensor math (no Ray, no I/O). Conventions shared with the "sft"/"preference" record formats:
``labels`` is aligned with ``input_ids`` and holds -100 where no loss is taken (prompt, padding); the model
predicts token t+1 from position t, so logits are shifted by one against labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from app.core.losses import IGNORE_INDEX, shift_packed_labels


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label_t | <t) for every position; 0 where the label is ignored.

    logits: [B, T, V] (position t predicts token t+1); labels: [B, T] with -100 = ignore.
    Returns [B, T-1] aligned with ``labels[:, 1:]``. Uses cross-entropy (a fused log-softmax + gather) so the
    [B, T, V] log-softmax is never materialised.
    """
    shifted = labels[:, 1:]
    logits = logits[:, :-1]
    nll = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), shifted.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    )
    return -nll.view(shifted.shape)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Sum (or mean, ``average=True``) of label-token log-probs per sequence: log π(y|x) of DPO eq. 7.

    logits: [B, T, V]; labels: [B, T]. Returns [B] float64 (token log-probs are float32; summing them in float64
    keeps two computations of the same sum within 1e-5 even for long responses). A row with no label tokens gets 0.
    """
    per_token = token_logprobs(logits, labels).double()
    total = per_token.sum(-1)
    if not average:
        return total
    count = (labels[:, 1:] != IGNORE_INDEX).sum(-1).clamp(min=1)
    return total / count


def selected_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log-softmax(logits)[i, targets[i]] for already-selected positions.

    logits: [N, V] (only the N positions that carry a label); targets: [N]. Returns [N] float32.
    Used by the DPO loop, which applies the LM head only at label positions instead of all B·T.
    """
    return -F.cross_entropy(logits.float(), targets, reduction="none")


@dataclass(frozen=True)
class PackedSequences:
    """Several variable-length sequences concatenated into one padding-free row.

    input_ids, position_ids, labels: [1, N] int64 (position_ids restart at 0 per sequence, which makes
    transformers' SDPA/eager attention block-diagonal when no attention_mask is passed and use_cache=False);
    seq_index: [N] which sequence each token belongs to; n_seqs: number of sequences.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    seq_index: torch.Tensor
    n_seqs: int

    @property
    def last_token_index(self) -> torch.Tensor:
        """[n_seqs] position in the row of each sequence's last token (what a reward head pools)."""
        ends = torch.zeros(self.n_seqs, dtype=torch.long, device=self.seq_index.device)
        positions = torch.arange(self.seq_index.numel(), device=self.seq_index.device)
        return ends.scatter_reduce(0, self.seq_index, positions, reduce="amax")

    def to(self, device: torch.device | str) -> "PackedSequences":
        """The same sequences with every tensor on ``device`` (GPU workers)."""
        return PackedSequences(self.input_ids.to(device), self.position_ids.to(device), self.labels.to(device),
                               self.seq_index.to(device), self.n_seqs)


def concat_for_packed_forward(input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]] | None = None) -> PackedSequences:
    """Concatenate sequences (lists of token ids, with aligned labels or none) into one row for a packed forward.

    Not to be confused with ``app.core.packing.pack_sequences``, which decides which examples share a window.
    Returns :class:`PackedSequences`: input_ids / position_ids / labels ``[1, sum(len)]``, seq_index ``[sum(len)]``.
    """
    if labels is None:
        labels = [[IGNORE_INDEX] * len(x) for x in input_ids]
    lengths = [len(x) for x in input_ids]
    if any(n == 0 for n in lengths):
        raise ValueError("cannot pack an empty sequence")
    for i, (x, y) in enumerate(zip(input_ids, labels)):
        if len(x) != len(y):
            raise ValueError(f"sequence {i}: input_ids ({len(x)}) and labels ({len(y)}) differ in length")
    flat = lambda seqs: torch.tensor([t for s in seqs for t in s], dtype=torch.long)[None]  # noqa: E731
    lengths_t = torch.tensor(lengths)
    return PackedSequences(
        input_ids=flat(input_ids),
        position_ids=torch.cat([torch.arange(n) for n in lengths])[None],
        labels=flat(labels),
        seq_index=torch.repeat_interleave(torch.arange(len(lengths)), lengths_t),
        n_seqs=len(lengths),
    )


def causal_lm_parts(model) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(decoder backbone, LM head) of a transformers causal LM, also through a peft wrapper (LoRA layers stay active)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def packed_sequence_logprobs(model, packed: PackedSequences, average: bool = False) -> torch.Tensor:
    """log π(y|x) per sequence of a packed row, applying the LM head only where a label exists.

    One backbone pass over [1, N] tokens (no padding), then the [H → V] head on just the M ≤ N label positions:
    for chat preference data the prompt is most of the tokens, so this skips most of the B·T·V logits a padded
    forward computes. Returns [n_seqs] float64 (float32 token log-probs summed in float64; sum, or per-token
    mean with ``average=True``).
    """
    backbone, head = causal_lm_parts(model)
    hidden = backbone(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False).last_hidden_state[0]
    # position t predicts labels[t+1], unless t+1 starts the next sequence
    targets = shift_packed_labels(packed.labels, packed.position_ids)[0]
    where = (targets != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    token_lp = selected_logprobs(head(hidden[where]), targets[where]).double()
    seq = packed.seq_index[where]
    total = torch.zeros(packed.n_seqs, dtype=token_lp.dtype, device=token_lp.device).index_add(0, seq, token_lp)
    if not average:
        return total
    count = torch.zeros(packed.n_seqs, dtype=token_lp.dtype, device=token_lp.device).index_add(0, seq, torch.ones_like(token_lp))
    return total / count.clamp(min=1)


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., token] for every position: ``logits [B, T, V]``, ``tokens [B, T]`` -> ``[B, T]`` float32.

    Used by PPO, whose response tokens are already aligned with the logits that predict them.
    """
    return selected_logprobs(logits.reshape(-1, logits.size(-1)), tokens.reshape(-1)).view(tokens.shape)


def shifted_token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-prob of each token given its prefix: ``logits [B, L, V]``, ``input_ids [B, L]`` -> ``[B, L-1]``
    where entry t is log p(input_ids[t+1] | input_ids[:t+1])."""
    return gather_logprobs(logits[:, :-1], input_ids[:, 1:])
