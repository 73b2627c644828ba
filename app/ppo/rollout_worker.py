"""Rollout workers for ``algo.mode=async``: an HF copy of the policy (``RolloutWorker``) or a vLLM engine
(``VLLMRolloutWorker``, ``rollout.backend=vllm``) that only samples.

A worker holds the newest adapter version it has been sent (``set_adapter(version, adapter)``: for HF the trainer's
LoRA weights by name, for vLLM the folder the policy wrote them to, loaded as a new ``LoRARequest``; a few MB, never
the base) and answers ``rollout(job)`` with whole batches: token ids, its own per-token log-probs (for TIS/MIS), the
adapter version that produced them and, with an environment, multi-turn episodes with their loss masks and rewards.
Ray runs an actor's calls in order, so a version sent while a batch is being generated takes effect at the next batch:
generation is never stopped for a sync.
"""

from __future__ import annotations

from app.ppo.actors import PolicyActor
from app.ppo.env import make_env
from app.ppo.episodes import ToolGlue, run_episodes
from app.ppo.rollout import VLLMEngineActor


class Rollouts:
    """``rollout(job)`` on top of the host class's ``generate(prompts, n, max_new_tokens, temperature, top_p, seed,
    with_logprobs=True)``, ``tokenizer``, ``glue`` (None without a chat template) and ``version`` (-1: none yet)."""

    def identity(self) -> str:
        """Which actor process this is (a replacement has a new one); 'local' outside Ray."""
        import ray

        if not ray.is_initialized():  # asking Ray's runtime context would start a Ray instance
            return "local"
        return (ray.get_runtime_context().get_actor_id() or "driver")[:12]

    def rollout(self, job: dict) -> dict:
        """Generate one batch. ``job``: batch_id, prompt_ids, questions, references, n, max_new_tokens, temperature,
        top_p, seed, env ('none' | 'single_turn' | 'calculator'), rule, max_turns, response_prefix. Returns the samples (``n`` per prompt,
        contiguous) with ``version`` and ``worker``."""
        if self.version < 0:
            raise RuntimeError("rollout worker has no adapter version yet (set_adapter first)")
        n, seed = job["n"], job["seed"]
        sampling = (job["max_new_tokens"], job["temperature"], job["top_p"])
        out = {"batch_id": job["batch_id"], "version": self.version, "worker": self.identity()}
        if job["env"] == "none":
            out["responses"], out["rollout_logp"] = self.generate(job["prompt_ids"], n, *sampling, seed, with_logprobs=True)
            return out
        if self.glue is None:
            raise RuntimeError("rollout.env needs a tokenizer with a chat template (tool messages are rendered with it)")

        def generate(contexts, turn):
            tokens, logps = self.generate(contexts, 1, *sampling, seed + 1009 * turn, with_logprobs=True)
            return list(zip(tokens, logps))

        rep = lambda xs: [x for x in xs for _ in range(n)]  # noqa: E731 - one episode per sample, groups contiguous
        episodes = run_episodes(rep(job["prompt_ids"]), rep(job["questions"]), rep(job["references"]),
                                lambda: make_env(job["env"], job["rule"], job["max_turns"]), generate, self.tokenizer,
                                self.glue, job["max_turns"], job.get("response_prefix", ""))
        tokens = [e.tokens() for e in episodes]
        out.update(responses=[t[0] for t in tokens], loss_masks=[t[1] for t in tokens], rollout_logp=[t[2] for t in tokens],
                   env_rewards=[e.reward for e in episodes], texts=[e.text for e in episodes],
                   tool_calls=[e.info.get("tool_calls", 0) for e in episodes],
                   tool_errors=[e.info.get("tool_errors", 0) for e in episodes],
                   turns=[e.info.get("turns", 1) for e in episodes])
        return out


class RolloutWorker(Rollouts, PolicyActor):
    """A PolicyActor that never trains (its optimizer stays empty). ``version`` -1 until the first ``set_adapter``."""

    def __init__(self, model_path: str, lora: dict, algo: dict, seed: int = 0, torch_threads: int = 1,
                 init_adapter: str | None = None):
        super().__init__(model_path, lora, algo, seed, torch_threads, init_adapter, reference="base")
        self.version = -1
        self.glue = ToolGlue.from_tokenizer(self.tokenizer) if self.tokenizer.chat_template else None

    def set_adapter(self, version: int, state: dict) -> int:
        """Take the trainer's adapter weights as version ``version``; returns it."""
        self.load_adapter_state(state)
        self.version = version
        return version


class VLLMRolloutWorker(Rollouts, VLLMEngineActor):
    """A vLLM engine (``rollout.backend=vllm``) as an async rollout worker: ``set_adapter(version, folder)`` takes the
    adapter the policy wrote to ``folder`` as the LoRA of the next batches (a new LoRARequest id per push)."""

    def __init__(self, model_path: str, max_loras: int, max_lora_rank: int, max_model_len: int, seed: int = 0,
                 gpu_memory_utilization: float = 0.3, kv_cache_gb: int = 1, cpu_threads_bind: str = "all"):
        from transformers import AutoTokenizer

        super().__init__(model_path, max_loras, max_lora_rank, max_model_len, seed, gpu_memory_utilization, kv_cache_gb,
                         cpu_threads_bind)
        self.version = -1
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.glue = ToolGlue.from_tokenizer(self.tokenizer) if self.tokenizer.chat_template else None

    def set_adapter(self, version: int, folder: str) -> int:
        """Serve the adapter in ``folder`` as version ``version`` from the next batch on; returns it."""
        return self.load_adapter(folder, version)
