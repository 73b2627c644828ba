"""PPOConfig: the schema of configs/ppo/*.yaml and configs/tiny/ppo_*.yaml (RLHF / RLVR with a Ray actor group)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from app.config.base import StrictModel
from app.config.common import LoraSpec, ModelSpec, RaySpec, TrackingSpec


class PromptSpec(StrictModel):
    """Where prompts come from and how they are rendered."""

    path: str = Field(
        "${shared}/data/gsm8k/train.jsonl",
        description="a 'prompt' dataset artifact folder, or a JSONL file with {question, answer} (GSM8K) or "
        "{prompt, reference} rows; '${shared}' expands to the shared assets folder",
    )
    split: str = Field("train", description="artifact split to read (artifact folders only)")
    max_prompts: int | None = Field(None, ge=1, description="use only the first N prompts (None: all)")
    system_prompt: str = Field(
        "Solve the math problem. End your reply with 'The answer is <number>.'",
        description="system message prepended to every prompt ('' for none)",
    )
    response_prefix: str = Field(
        "", description="text the assistant turn starts with (pre-filled after the chat template's generation prompt): "
        "generation continues from it and the reward scores prefix + generated text, e.g. 'The answer is' for "
        "answer-first rewards ('' for none)",
    )
    max_prompt_tokens: int = Field(256, ge=8, description="prompts longer than this are left-truncated")
    max_solution_steps: int | None = Field(
        None, ge=0, description="keep only rows whose reference solution has at most N GSM8K calculator steps "
        "('<<a+b=c>>'; applied before max_prompts): an easy curriculum for small models (None: all rows)",
    )
    shuffle_seed: int = Field(0, description="seed of the prompt order (the cursor walks this fixed order)")


class PolicyLoraSpec(LoraSpec):
    """The shared LoRA schema (app/config/common.py) plus an on/off switch: disabled means full fine-tuning."""

    enabled: bool = Field(True, description="train a LoRA adapter (True) or all weights (False)")


class RolloutSpec(StrictModel):
    """Generation of responses."""

    backend: Literal["hf", "vllm"] = Field("hf", description="'hf' generate inside the policy actor, or a vLLM engine actor")
    samples_per_prompt: int = Field(1, ge=1, description="responses per prompt (>=2 for grpo/rloo)")
    max_new_tokens: int = Field(64, ge=1, description="response length cap")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling")
    workers: int = Field(1, ge=1, description="algo.mode=async: rollout worker actors (HF generate, or a vLLM engine each "
                         "with rollout.backend=vllm), each with its own copy of the model and the newest adapter version "
                         "it was sent")
    env: Literal["none", "single_turn", "calculator"] = Field(
        "none", description="algo.mode=async: 'none' (one reply, scored by the RewardActor), 'single_turn' (the reward "
        "rule as a one-step environment) or 'calculator' (GSM8K with a calc(expr) tool; app/ppo/env.py)")
    max_turns: int = Field(3, ge=1, description="rollout.env: model turns per episode (a tool-call loop ends here); "
                           "max_new_tokens caps each turn")
    vllm_max_loras: int = Field(2, ge=1, description="vLLM: adapters resident at once")
    vllm_max_lora_rank: int = Field(8, ge=1, description="vLLM: max LoRA rank (>= lora.r)")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0.0, le=1.0, description="vLLM: GPU memory share (GPU only)")
    vllm_kv_cache_gb: int = Field(1, ge=1, description="vLLM CPU backend: KV cache GiB (VLLM_CPU_KVCACHE_SPACE)")
    vllm_cpu_threads_bind: str = Field(
        "all", description="vLLM CPU backend: VLLM_CPU_OMP_THREADS_BIND; 'all' = every CPU the engine actor may use, "
        "or vLLM's own 'auto' / 'nobind' / '0-3' (vLLM's 'auto' left rollouts on one core here)")


class RewardSpec(StrictModel):
    """Who scores a (prompt, response): a rule, a trained reward model, or their weighted sum; plus a length penalty.

    reward = model_weight * RM(prompt + response) + rule_weight * rule(response, reference)
             - length_penalty * max(0, response_tokens - length_penalty_free_tokens)
    (kind 'rule' and 'model' use only their own term, with weight 1.) Every source that is computed is logged per
    iteration (``rm_score``, ``rule_score``), so RM score and rule-verified accuracy sit side by side under 'sum'
    (``rule_weight: 0`` logs the rule without rewarding it).
    """

    kind: Literal["rule", "model", "sum"] = Field(
        "rule", description="'rule' (app.core.rewards), 'model' (a trained reward model folder) or 'sum' (weighted sum of both)")
    rule: str = Field("gsm8k", description="rule name in app.core.rewards.RULE_REWARDS (kind rule/sum)")
    model_path: str | None = Field(
        None, description="reward model folder written by the reward job (kind model/sum): rayalign_lineage.json with "
        "method 'reward' and a score head; its base SHA must equal the policy's")
    model_weight: float = Field(1.0, ge=0.0, description="weight of the reward-model score (kind sum)")
    rule_weight: float = Field(1.0, ge=0.0, description="weight of the rule reward (kind sum; 0 logs it without rewarding)")
    length_penalty: float = Field(
        0.0, ge=0.0, description="reward subtracted per response token beyond length_penalty_free_tokens (0: off); "
        "a guard against a reward model that pays for length")
    length_penalty_free_tokens: int = Field(0, ge=0, description="response tokens that cost nothing")
    min_reply_tokens: int = Field(
        0, ge=0, description="replies with fewer response tokens (end of turn included: an empty reply is 1) get "
        "-short_reply_penalty (0: off); a guard against a reward model that pays for saying nothing")
    short_reply_penalty: float = Field(0.0, ge=0.0, description="reward subtracted from a reply shorter than "
                                       "min_reply_tokens")
    model_batch_size: int = Field(16, ge=1, description="sequences per reward-model forward pass")


class InitSpec(StrictModel):
    """Where the policy starts and what the KL leash pulls towards."""

    adapter: str | None = Field(
        None, description="SFT LoRA adapter folder (peft layout + rayalign_lineage.json) the policy starts from and keeps "
        "training (its rank/alpha/modules replace lora.* for the policy; the critic still uses lora.*); None: a fresh "
        "LoRA on the base")
    reference: Literal["init", "base"] = Field(
        "init", description="the frozen reference: 'init' = the policy's starting point (the SFT adapter, frozen), "
        "'base' = the base model without any adapter")


class AlgoSpec(StrictModel):
    """The RL objective and its optimizer."""

    estimator: Literal["gae", "grpo", "rloo"] = Field("gae", description="advantages: GAE with a critic, or critic-free group baselines")
    gamma: float = Field(1.0, ge=0.0, le=1.0, description="discount")
    lam: float = Field(0.95, ge=0.0, le=1.0, description="GAE lambda")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k1", description="per-token KL(pi||ref) estimator in the reward penalty")
    init_kl_coef: float = Field(0.05, ge=0.0, description="initial KL penalty coefficient beta")
    target_kl: float | None = Field(6.0, gt=0.0, description="adaptive controller target (sequence KL, nats); None: fixed beta")
    kl_horizon: int = Field(10000, ge=1, description="adaptive controller horizon (samples)")
    whiten_advantages: bool = Field(True, description="GAE only: normalize advantages to mean 0, std 1 per batch")
    ppo_epochs: int = Field(2, ge=1, description="passes over each rollout batch")
    minibatch_size: int = Field(4, ge=1, description="sequences per optimizer step")
    clip: float = Field(0.2, gt=0.0, description="policy ratio clip epsilon")
    value_clip: float | None = Field(0.2, gt=0.0, description="value clip range (None: unclipped)")
    vf_coef: float = Field(0.5, ge=0.0, description="value loss weight (critic actor)")
    entropy_coef: float = Field(0.0, ge=0.0, description="entropy bonus weight")
    lr: float = Field(1e-4, gt=0.0, description="policy learning rate (AdamW)")
    value_lr: float = Field(1e-4, gt=0.0, description="critic learning rate (AdamW)")
    max_grad_norm: float = Field(1.0, gt=0.0, description="gradient clipping norm")
    mode: Literal["sync", "async"] = Field(
        "sync", description="'sync': generate, score and train take turns; 'async': rollout workers keep generating "
        "with the newest adapter version they have while the trainer trains (app/ppo/async_driver.py)")
    max_staleness: int = Field(1, ge=0, description="async: a batch is trained on only if the policy has moved at most "
                               "this many versions since the adapter that generated it (0 = on-policy)")
    is_correction: Literal["none", "tis", "mis"] = Field(
        "none", description="off-policy correction between the rollout's log-probs and the trainer's "
        "(app/core/importance.py): truncated IS, masked IS, or none; the rollout log-probs come from HF generate or "
        "vLLM (raw log-probs of the sampled tokens); meant for algo.mode=async, allowed in sync")
    is_cap: float = Field(2.0, gt=0.0, description="TIS truncation / MIS upper bound on the IS ratio")
    is_low: float = Field(0.0, ge=0.0, description="MIS: lower bound on the IS ratio")
    is_level: Literal["token", "sequence"] = Field("token", description="MIS: reject tokens or whole sequences")


class PlacementSpec(StrictModel):
    """Where the roles run: one placement group; colocated roles share a bundle."""

    colocate: bool = Field(True, description="policy, reference, critic and reward share one bundle (else one bundle each)")
    reference: Literal["policy", "actor"] = Field(
        "policy", description="'policy': the LoRA policy with its adapter disabled; 'actor': a separate frozen copy"
    )
    policy_cpus: float = Field(1.0, gt=0.0, description="CPUs of the policy actor (fractional allowed)")
    value_cpus: float = Field(0.5, gt=0.0, description="CPUs of the critic actor")
    reward_cpus: float = Field(0.25, gt=0.0, description="CPUs of the reward actor")
    reference_cpus: float = Field(0.25, gt=0.0, description="CPUs of a separate reference actor")
    rollout_cpus: float = Field(1.0, gt=0.0, description="CPUs of a vLLM engine actor / of each async rollout worker")
    gpus_per_role: float = Field(0.0, ge=0.0, description="GPUs per model actor (fractional to share a GPU)")
    torch_threads: int = Field(2, ge=1, description="torch intra-op threads inside each model actor")


class RunSpec(StrictModel):
    """Loop length, checkpointing and outputs."""

    iterations: int = Field(10, ge=1, description="PPO iterations (rollout + update)")
    prompts_per_iteration: int = Field(8, ge=1, description="prompts sampled per iteration")
    checkpoint_every: int = Field(1, ge=1, description="save a resumable checkpoint every N iterations")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk")
    max_actor_restarts: int = Field(2, ge=0, description="times a dead actor is replaced and the run restored from its last checkpoint")
    seed: int = Field(0, description="torch seed of every actor")
    output_dir: str | None = Field(None, description="run folder (None: <storage_path>/<run name>)")


class PPOConfig(StrictModel):
    """A PPO / GRPO / RLOO run: prompts -> rollouts -> rewards -> advantages -> clipped updates -> adapter."""

    model: ModelSpec = Field(ModelSpec(), description="base model of policy, reference and critic")
    prompts: PromptSpec = Field(PromptSpec(), description="prompt source")
    lora: PolicyLoraSpec = Field(
        PolicyLoraSpec(dropout=0.0), description="LoRA settings (dropout off by default: it would make the PPO ratio noisy)"
    )
    rollout: RolloutSpec = Field(RolloutSpec(), description="generation")
    init: InitSpec = Field(InitSpec(), description="policy initialisation (SFT adapter) and the KL reference")
    reward: RewardSpec = Field(RewardSpec(), description="reward")
    algo: AlgoSpec = Field(AlgoSpec(), description="objective and optimizer")
    placement: PlacementSpec = Field(PlacementSpec(), description="Ray placement")
    run: RunSpec = Field(RunSpec(), description="loop, checkpoints, outputs")
    ray: RaySpec = Field(RaySpec(), description="Ray cluster")
    tracking: TrackingSpec = Field(TrackingSpec(), description="MLflow")

    @model_validator(mode="after")
    def _check(self) -> "PPOConfig":
        if self.algo.estimator in ("grpo", "rloo") and self.rollout.samples_per_prompt < 2:
            raise ValueError(f"algo.estimator={self.algo.estimator} needs rollout.samples_per_prompt >= 2")
        if self.placement.reference == "policy" and not self.lora.enabled:
            raise ValueError("placement.reference='policy' needs a LoRA policy (full fine-tuning has no adapter to disable)")
        if self.rollout.backend == "vllm" and not self.lora.enabled:
            raise ValueError("rollout.backend=vllm syncs adapter-only weights: it needs lora.enabled=true")
        if self.rollout.backend == "vllm" and self.rollout.vllm_max_lora_rank < self.lora.r:
            raise ValueError("rollout.vllm_max_lora_rank must be >= lora.r")
        if self.reward.kind in ("model", "sum") and not self.reward.model_path:
            raise ValueError(f"reward.kind={self.reward.kind} but reward.model_path is not set: PPO has no reward source "
                             "(give a reward model folder, or use reward.kind=rule)")
        if self.algo.is_low > self.algo.is_cap:
            raise ValueError(f"algo.is_low ({self.algo.is_low}) must be <= algo.is_cap ({self.algo.is_cap})")
        if self.algo.mode == "async":
            if not self.lora.enabled:
                raise ValueError("algo.mode=async ships adapter versions to the rollout workers: it needs lora.enabled=true")
        else:
            if self.rollout.env != "none":
                raise ValueError(f"rollout.env={self.rollout.env} runs in the rollout workers: set algo.mode=async "
                                 "(max_staleness=0 is on-policy)")
            if self.rollout.workers != 1:
                raise ValueError("rollout.workers is an algo.mode=async setting (sync generates in the policy actor)")
        if self.rollout.env != "none" and self.algo.estimator == "gae":
            raise ValueError(f"rollout.env={self.rollout.env} needs algo.estimator grpo or rloo (the critic's reward "
                             "shaping puts the score on the last loss token, which multi-turn masks move)")
        if self.init.adapter and not self.lora.enabled:
            raise ValueError("init.adapter continues training a LoRA adapter: it needs lora.enabled=true")
        return self
