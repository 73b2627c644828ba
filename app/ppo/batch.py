"""The rollout batch: prompts and responses as one padded tensor block that every model actor reads the same way.

Layout per row: ``[left-padded prompt (P) | right-padded response (T)]``, ``L = P + T``. The response ends after its
first EOS (kept, so the policy learns to stop). Log-probs, values and advantages are ``[B, T]`` aligned with the
response tokens; ``response_mask`` marks real ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RolloutBatch:
    """Padded prompt+response token block. ``input_ids, attention_mask, position_ids: [B, L]``; ``response_mask: [B, T]``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    response_mask: torch.Tensor
    prompt_len: int

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_len:]

    def select(self, index: torch.Tensor) -> "RolloutBatch":
        """Rows ``index`` (a minibatch), trimmed of columns that are padding in every selected row."""
        am = self.attention_mask[index]
        keep_t = int(am[:, self.prompt_len:].sum(1).max().clamp(min=1))  # real tokens, tool tokens of multi-turn included
        p_max = int(am[:, : self.prompt_len].sum(1).max())
        cut = self.prompt_len - p_max
        end = self.prompt_len + keep_t
        return RolloutBatch(
            self.input_ids[index, cut:end], am[:, cut:end], self.position_ids[index, cut:end],
            self.response_mask[index, :keep_t], p_max,
        )


@dataclass
class Samples:
    """One batch of rollouts as the trainer receives it. ``prompts``: one Prompt per sample (groups contiguous);
    ``responses``: token lists; optional per-sample ``loss_masks`` (multi-turn: model tokens only),
    ``rollout_logp`` (the sampler's log-probs, for TIS/MIS), ``env_rewards`` (an environment scored the episode:
    no RewardActor call), ``texts`` (the model's turns as text, when responses hold more than the model said)."""

    prompts: list
    responses: list[list[int]]
    loss_masks: list[list[float]] | None = None
    rollout_logp: list[list[float]] | None = None
    env_rewards: list[float] | None = None
    texts: list[str] | None = None


def trim_response(tokens: list[int], eos_ids: set[int], pad_id: int) -> list[int]:
    """Cut a generated token list after its first EOS (inclusive) and drop trailing padding."""
    out = []
    for tok in tokens:
        if tok in eos_ids:
            out.append(tok)
            break
        out.append(tok)
    while out and out[-1] == pad_id and pad_id not in eos_ids:
        out.pop()
    return out


def build_batch(prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                loss_masks: list[list[float]] | None = None) -> RolloutBatch:
    """Pack token lists into a RolloutBatch (prompts left-padded, responses right-padded; empty responses get one pad
    token with mask 0). ``loss_masks`` (multi-turn, one per response, same length): 0 on tokens that are context but
    carry no loss (tool messages); they stay in the attention mask."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    B = len(prompts)
    P = max(len(p) for p in prompts)
    T = max(1, max(len(r) for r in responses))
    ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, P + T), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, P - len(p):P] = torch.tensor(p, dtype=torch.long)
        attn[i, P - len(p):P] = 1
        if r:
            ids[i, P:P + len(r)] = torch.tensor(r, dtype=torch.long)
            attn[i, P:P + len(r)] = 1
    position_ids = (attn.cumsum(1) - 1).clamp(min=0)
    response_mask = attn[:, P:].float()
    if loss_masks is not None:
        response_mask = response_mask * pad_rows(loss_masks, T)
    return RolloutBatch(ids, attn, position_ids, response_mask, P)


def pad_rows(rows: list[list[float]], width: int, value: float = 0.0) -> torch.Tensor:
    """Right-pad per-response float lists (loss masks, rollout log-probs) to ``[B, width]``."""
    out = torch.full((len(rows), width), value, dtype=torch.float32)
    for i, row in enumerate(rows):
        if row:
            out[i, :len(row)] = torch.tensor(row, dtype=torch.float32)
    return out
