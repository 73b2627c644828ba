"""The PPO roles as plain classes; ``app.ppo.group`` turns them into Ray actors on placement-group bundles.

PolicyActor (trainable; LoRA or full; HF generation; its disabled-adapter view is the reference model),
ReferenceActor (a separate frozen copy, for full fine-tuning or disaggregated placement), ValueActor (critic:
backbone + scalar value head, trainable), RewardActor (rule functions from ``app.core.rewards`` or a trained reward
model). All tensors crossing actor boundaries are CPU tensors inside a ``RolloutBatch``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from app.core.advantages import masked_mean
from app.core.logprobs import gather_logprobs
from app.core.ppo_losses import entropy_from_logits, policy_loss, value_loss
from app.core.rewards import RULE_REWARDS
from app.ppo.batch import RolloutBatch, trim_response


def _setup(seed: int, torch_threads: int) -> None:
    torch.set_num_threads(torch_threads)
    torch.manual_seed(seed)


def _lora_config(lora: dict, causal_lm: bool):
    """The one LoRA builder (app.models.lora.lora_config) on the actor's plain-dict copy of ``PolicyLoraSpec``: the
    hand-built LoraConfig it replaces dropped ``layers_to_transform`` and split ``'all-linear'`` into characters."""
    from app.config.ppo import PolicyLoraSpec
    from app.models.lora import lora_config

    return lora_config(PolicyLoraSpec.model_validate(lora), "CAUSAL_LM" if causal_lm else None)


def response_logits(model, batch: RolloutBatch) -> torch.Tensor:
    """Logits that predict the response tokens: ``[B, T, V]`` (only T+1 positions go through the LM head)."""
    T = batch.response_mask.shape[1]
    out = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
        use_cache=False, logits_to_keep=T + 1,
    )
    return out.logits[:, -T - 1:-1]


def _minibatches(n: int, size: int, epochs: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        yield from torch.randperm(n, generator=gen).split(size)


def _digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class PolicyActor:
    """The trainable policy pi_theta. ``lora``/``algo`` are the dumped LoraSpec/AlgoSpec dicts."""

    def __init__(self, model_path: str, lora: dict, algo: dict, seed: int = 0, torch_threads: int = 2,
                 init_adapter: str | None = None, reference: str = "init"):
        """``init_adapter``: an SFT LoRA folder the policy keeps training (adapter 'default'); with ``reference='init'``
        a frozen second copy (adapter 'reference') is the KL reference, with 'base' the adapter-disabled base is."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _setup(seed, torch_threads)
        self.algo = algo
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        self.is_lora = bool(lora["enabled"])
        self.reference_adapter: str | None = None
        if self.is_lora and init_adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
            if reference == "init":
                model.load_adapter(init_adapter, adapter_name="reference", is_trainable=False)
                self.reference_adapter = "reference"
            model.set_adapter("default")  # only the policy's copy is trainable
        elif self.is_lora:
            from peft import get_peft_model

            model = get_peft_model(model, _lora_config(lora, causal_lm=True))
        self.model = model
        self.model.eval()  # no dropout in rollouts/scoring; LoRA dropout only matters when configured
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=algo["lr"])

    def ping(self) -> bool:
        return True

    @torch.no_grad()
    def generate(
        self, prompts: list[list[int]], n: int, max_new_tokens: int, temperature: float, top_p: float, seed: int,
        with_logprobs: bool = False,
    ) -> list[list[int]] | tuple[list[list[int]], list[list[float]]]:
        """Sample ``n`` responses per prompt (contiguous); returns token lists cut after the first EOS, and with
        ``with_logprobs`` also each kept token's log-prob under the sampling model (raw logits, before temperature /
        top-p, the way the trainer scores them; the rollout side of TIS/MIS)."""
        torch.manual_seed(seed)
        P = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), P), self.pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, P - len(p):] = torch.tensor(p)
            attn[i, P - len(p):] = 1
        out = self.model.generate(
            input_ids=ids, attention_mask=attn, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
            max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=self.pad_id,
            eos_token_id=self.tokenizer.eos_token_id, output_logits=with_logprobs, return_dict_in_generate=True,
        )
        eos = {self.tokenizer.eos_token_id}
        responses = [trim_response(row.tolist(), eos, self.pad_id) for row in out.sequences[:, P:]]
        if not with_logprobs:
            return responses
        steps = torch.stack(out.logits, 1).float()  # [B*n, steps, V]
        token_logp = gather_logprobs(steps, out.sequences[:, P:P + steps.shape[1]])
        return responses, [token_logp[i, :len(r)].tolist() for i, r in enumerate(responses)]

    @torch.no_grad()
    def logprobs(self, batch: RolloutBatch, reference: bool = False) -> torch.Tensor:
        """Per-token log-probs of the responses ``[B, T]``; ``reference=True`` uses the base model (adapter off)."""
        if reference:
            if not self.is_lora:
                raise RuntimeError("a full fine-tuned policy has no reference view; use a ReferenceActor")
            if self.reference_adapter:  # the frozen SFT adapter
                self.model.set_adapter(self.reference_adapter)
                try:
                    return gather_logprobs(response_logits(self.model, batch), batch.response_ids) * batch.response_mask
                finally:
                    self.model.set_adapter("default")
            with self.model.disable_adapter():
                return gather_logprobs(response_logits(self.model, batch), batch.response_ids) * batch.response_mask
        return gather_logprobs(response_logits(self.model, batch), batch.response_ids) * batch.response_mask

    def update(self, batch: RolloutBatch, old_logp: torch.Tensor, advantages: torch.Tensor, seed: int,
               is_weights: torch.Tensor | None = None, is_mask: torch.Tensor | None = None) -> dict:
        """PPO epochs over shuffled minibatches with the clipped surrogate (+ entropy bonus); mean diagnostics.

        ``is_weights`` / ``is_mask`` ``[B, T]``: the off-policy correction (``app.core.importance.correction``):
        per-token loss weights and the loss mask (MIS drops rejected tokens); None = weights 1, the response mask."""
        a = self.algo
        self.model.train()
        sums: dict[str, float] = {}
        steps = 0
        for idx in _minibatches(batch.input_ids.shape[0], a["minibatch_size"], a["ppo_epochs"], seed):
            mb = batch.select(idx)
            T = mb.response_mask.shape[1]
            logits = response_logits(self.model, mb)
            logp = gather_logprobs(logits, mb.response_ids)
            loss_mask = mb.response_mask if is_mask is None else is_mask[idx, :T]
            weights = None if is_weights is None else is_weights[idx, :T]
            loss, info = policy_loss(logp, old_logp[idx, :T], advantages[idx, :T], loss_mask, a["clip"], weights)
            entropy = masked_mean(entropy_from_logits(logits), mb.response_mask)
            total = loss - a["entropy_coef"] * entropy
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], a["max_grad_norm"]
            )
            self.optimizer.step()
            for key, value in {"policy_loss": loss, "entropy": entropy, "grad_norm": grad_norm, **info}.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            steps += 1
        self.model.eval()
        return {k: v / steps for k, v in sums.items()}

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The trainable (LoRA) weights by name: what async mode ships to the rollout workers each version."""
        return {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad}

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy ``adapter_state()`` of another replica into this model (names must match exactly)."""
        params = {k: v for k, v in self.model.named_parameters() if v.requires_grad}
        if set(params) != set(state):
            raise RuntimeError(f"adapter weights do not match this model ({sorted(set(params) ^ set(state))[:3]}…)")
        with torch.no_grad():
            for k, v in state.items():
                params[k].copy_(v)

    def save_state(self, folder: str) -> str:
        """Trainable weights + optimizer to ``folder/policy.pt`` (and the peft adapter to ``folder/adapter``)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        trainable = {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad}
        torch.save({"trainable": trainable, "optimizer": self.optimizer.state_dict()}, out / "policy.pt")
        if self.is_lora:
            self.model.save_pretrained(out / "adapter", selected_adapters=["default"])
        return str(out)

    def load_state(self, folder: str) -> str:
        state = torch.load(Path(folder) / "policy.pt", weights_only=True)
        missing = set(state["trainable"]) ^ {k for k, v in self.model.named_parameters() if v.requires_grad}
        if missing:
            raise RuntimeError(f"{folder}: checkpoint does not match the policy's trainable weights ({sorted(missing)[:3]}…)")
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for k, v in state["trainable"].items():
                params[k].copy_(v)
        self.optimizer.load_state_dict(state["optimizer"])
        return self.digest()

    def save_adapter(self, folder: str) -> str:
        """The peft adapter only (vLLM weight sync and the final artifact)."""
        if not self.is_lora:
            raise RuntimeError("adapter export needs a LoRA policy")
        self.model.save_pretrained(folder, selected_adapters=["default"])  # never the frozen reference copy
        return folder

    def adapter_shape(self) -> dict:
        """r / alpha / target modules of the trained adapter (from the SFT adapter when the policy started from one)."""
        c = self.model.peft_config["default"]
        return {"r": c.r, "alpha": c.lora_alpha, "target_modules": sorted(c.target_modules)}

    def digest(self) -> str:
        """Short hash of the trainable weights (proves a restore really restored)."""
        return _digest(self.model)


class ReferenceActor:
    """A frozen copy of the base model (or base + SFT adapter, merged) that only scores log-probs."""

    def __init__(self, model_path: str, seed: int = 0, torch_threads: int = 1, adapter: str | None = None):
        from transformers import AutoModelForCausalLM

        _setup(seed, torch_threads)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        if adapter:  # the SFT model as reference: adapter merged into a frozen copy
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        self.model = model.eval()
        self.model.requires_grad_(False)

    def ping(self) -> bool:
        return True

    @torch.no_grad()
    def logprobs(self, batch: RolloutBatch, reference: bool = True) -> torch.Tensor:
        return gather_logprobs(response_logits(self.model, batch), batch.response_ids) * batch.response_mask


class ValueActor:
    """Critic V(s_t): the base backbone (LoRA or full) plus a linear head on the last hidden state."""

    def __init__(self, model_path: str, lora: dict, algo: dict, seed: int = 0, torch_threads: int = 1):
        from transformers import AutoModel

        _setup(seed, torch_threads)
        self.algo = algo
        backbone = AutoModel.from_pretrained(model_path, dtype=torch.float32)
        if lora["enabled"]:
            from peft import get_peft_model

            backbone = get_peft_model(backbone, _lora_config(lora, causal_lm=False))
        self.backbone = backbone.eval()
        hidden = backbone.config.hidden_size
        self.head = torch.nn.Linear(hidden, 1)
        torch.nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1))
        torch.nn.init.zeros_(self.head.bias)
        self.modules = torch.nn.ModuleDict({"backbone": self.backbone, "head": self.head})
        self.optimizer = torch.optim.AdamW([p for p in self.modules.parameters() if p.requires_grad], lr=algo["value_lr"])

    def ping(self) -> bool:
        return True

    def _values(self, batch: RolloutBatch) -> torch.Tensor:
        T = batch.response_mask.shape[1]
        hidden = self.backbone(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids, use_cache=False
        ).last_hidden_state
        return self.head(hidden[:, -T - 1:-1]).squeeze(-1)

    @torch.no_grad()
    def values(self, batch: RolloutBatch) -> torch.Tensor:
        """V at the state before each response token: ``[B, T]`` (0 on padding)."""
        return self._values(batch) * batch.response_mask

    def update(self, batch: RolloutBatch, old_values: torch.Tensor, returns: torch.Tensor, seed: int) -> dict:
        """Clipped value regression over the same epochs/minibatch schedule as the policy."""
        a = self.algo
        sums = {"value_loss": 0.0, "vf_clip_frac": 0.0}
        steps = 0
        for idx in _minibatches(batch.input_ids.shape[0], a["minibatch_size"], a["ppo_epochs"], seed):
            mb = batch.select(idx)
            T = mb.response_mask.shape[1]
            loss, info = value_loss(self._values(mb), old_values[idx, :T], returns[idx, :T], mb.response_mask, a["value_clip"])
            self.optimizer.zero_grad(set_to_none=True)
            (a["vf_coef"] * loss).backward()
            torch.nn.utils.clip_grad_norm_([p for p in self.modules.parameters() if p.requires_grad], a["max_grad_norm"])
            self.optimizer.step()
            sums["value_loss"] += float(loss.detach())
            sums["vf_clip_frac"] += float(info["vf_clip_frac"])
            steps += 1
        return {k: v / steps for k, v in sums.items()}

    def save_state(self, folder: str) -> str:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        trainable = {k: v.detach().clone() for k, v in self.modules.named_parameters() if v.requires_grad}
        torch.save({"trainable": trainable, "optimizer": self.optimizer.state_dict()}, out / "value.pt")
        return str(out)

    def load_state(self, folder: str) -> str:
        state = torch.load(Path(folder) / "value.pt", weights_only=True)
        params = dict(self.modules.named_parameters())
        with torch.no_grad():
            for k, v in state["trainable"].items():
                params[k].copy_(v)
        self.optimizer.load_state_dict(state["optimizer"])
        return _digest(self.modules)


class RewardActor:
    """Scores responses with every configured source: a rule from ``RULE_REWARDS`` and/or a trained reward model.

    Extension point: register a ``(response, reference) -> float`` function in ``app.core.rewards.RULE_REWARDS``.
    The driver weights and sums the components (``app.core.rewards.combine_rewards``).
    """

    def __init__(self, kind: str, rule: str = "gsm8k", model_path: str | None = None, torch_threads: int = 1,
                 batch_size: int = 16):
        torch.set_num_threads(torch_threads)
        self.rule = self.model = None
        self.batch_size = batch_size
        if kind in ("rule", "sum"):
            if rule not in RULE_REWARDS:
                raise ValueError(f"unknown reward rule {rule!r} (known: {', '.join(sorted(RULE_REWARDS))})")
            self.rule = RULE_REWARDS[rule]
        if kind in ("model", "sum"):
            from app.models.reward_head import load_reward_model

            self.model = load_reward_model(model_path)

    def ping(self) -> bool:
        return True

    @torch.no_grad()
    def score(self, conversations: list[str], responses: list[str], references: list[str]) -> dict[str, list[float]]:
        """``conversations``: chat-rendered prompt + response + end-of-turn (what the RM was trained on);
        ``responses``: the assistant text alone (what a rule reads). Returns {'rule': [...], 'model': [...]} for the
        configured sources."""
        out: dict[str, list[float]] = {}
        if self.rule is not None:
            out["rule"] = [float(self.rule(r, ref)) for r, ref in zip(responses, references)]
        if self.model is not None:
            out["model"] = self.model.score_texts(conversations, self.batch_size).tolist()
        return out
