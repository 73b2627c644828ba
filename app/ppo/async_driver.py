"""``algo.mode=async``: rollout workers generate while the trainer trains, with a bounded policy lag.

Batch ``b`` (the prompts of iteration ``b``, seed ``run.seed * 100003 + b``, as in sync) is handed to an idle
rollout worker as soon as ``b - version <= max_staleness``, where ``version`` is the number of updates the trainer has
made (the adapter version it has sent). The worker samples with the newest version it has (``>= version``), so the
batch's policy lag when it is trained on (iteration ``b``) is at most ``max_staleness`` by construction; the trainer
checks it again and regenerates a batch that is too old. After every update the trainer sends its LoRA weights to
every worker as the next version without waiting (Ray queues it behind the batch a worker is generating).
``max_staleness=0`` is sync with the generation moved to a worker: same batches, seeds and losses.

``rollout.backend``: 'hf' workers are HF copies of the policy and get the LoRA weights by name; 'vllm' workers are
vLLM engines (``VLLMRolloutWorker``): the policy writes the adapter to ``<run>/sync/v<version>`` and each worker
serves it as a new LoRARequest from its next batch. Both return their own log-probs of the sampled tokens.

Samples carry the version that produced them and the worker's log-probs; ``algo.is_correction`` (TIS/MIS,
``app.core.importance``) corrects the trainer's loss for the lag. A rollout worker that dies is replaced in its bundle,
sent the current adapter, and its unfinished batch is generated again from scratch (the same prompts and seed):
nothing of a dead worker's batch is used and no iteration is skipped. Trainer-side failures take the sync path
(restore from the last checkpoint). Design read from AReaL / verl fully-async / OpenRLHF async (no code copied).
"""

from __future__ import annotations

import time

import ray
from ray.exceptions import RayActorError

from app.ppo.batch import Samples
from app.ppo.driver import PPODriver
from app.ppo.group import RayActorGroup, RoleResources
from app.ppo.prompts import PromptCursor
from app.ppo.rollout_worker import RolloutWorker, VLLMRolloutWorker

TOOL_MESSAGE_TOKENS = 96  # vLLM workers with rollout.env: context room per tool message (the chat glue + a short result)


class AsyncPPODriver(PPODriver):
    """PPODriver whose ``step`` trains on batches produced ahead of time by ``rollout.workers`` RolloutWorkers."""

    def __init__(self, cfg, run_dir):
        self.rollout: RayActorGroup | None = None
        self.rollout_restarts = 0
        self.stale_dropped = 0
        self.lost_batches: list[int] = []  # batch ids whose worker died mid-generation (each generated again)
        self._clear_pipeline()
        super().__init__(cfg, run_dir)

    # ----- actors -------------------------------------------------------------------------------------------------
    def extra_roles(self) -> dict[str, RoleResources]:
        pl = self.cfg.placement
        return {"rollout": RoleResources(pl.rollout_cpus, pl.gpus_per_role, replicas=self.cfg.rollout.workers)}

    def start_extra_actors(self, roles: dict[str, RoleResources]) -> None:
        c, r, path = self.cfg, self.cfg.rollout, str(self.model.path)
        if r.backend == "vllm":
            # a multi-turn context holds every earlier turn and tool message: room for max_turns of both
            turns = r.max_turns if r.env != "none" else 1
            max_len = c.prompts.max_prompt_tokens + turns * r.max_new_tokens + (turns - 1) * TOOL_MESSAGE_TOKENS
            self.rollout = RayActorGroup("rollout", VLLMRolloutWorker, roles["rollout"], self.placement, path,
                                         r.vllm_max_loras, r.vllm_max_lora_rank, max_len, c.run.seed,
                                         r.vllm_gpu_memory_utilization, r.vllm_kv_cache_gb, r.vllm_cpu_threads_bind)
        else:
            self.rollout = RayActorGroup("rollout", RolloutWorker, roles["rollout"], self.placement, path,
                                         c.lora.model_dump(), c.algo.model_dump(), c.run.seed, c.placement.torch_threads,
                                         c.init.adapter)
        self._clear_pipeline()

    def groups(self) -> list[RayActorGroup]:
        return super().groups() + ([self.rollout] if self.rollout is not None else [])

    def _clear_pipeline(self) -> None:
        self.jobs: dict[int, dict] = {}  # batch id -> job (kept until trained on, for regeneration)
        self.cursor_after: dict[int, dict] = {}  # batch id -> prompt cursor state after its prompts were taken
        self.inflight: dict = {}  # object ref -> (worker index, batch id)
        self.ready: dict[int, dict] = {}  # batch id -> finished rollout
        self.next_batch = 0
        self.regenerate: list[int] = []  # batch ids to generate again (a batch found too stale)
        self.trained_cursor: dict | None = None

    def _push_adapter(self, workers: list[int] | None = None, wait: bool = False) -> None:
        """Send the policy's adapter to rollout workers as version ``self.iteration`` (no waiting unless ``wait``):
        HF workers get the weights (an object ref), vLLM workers the folder the policy has just written them to."""
        version = self.iteration
        if self.cfg.rollout.backend == "vllm":
            adapter = self._write_sync_adapter(version)  # on disk before any worker reads it; old versions pruned
        else:
            adapter = self.policy.call_one("adapter_state")
        idx = range(len(self.rollout)) if workers is None else workers
        refs = [self.rollout.actors[i].set_adapter.remote(version, adapter) for i in idx]
        if wait:
            ray.get(refs)

    # ----- checkpoints: the cursor of the last *trained* batch, not of batches generated ahead -----------------------
    def save(self):
        live = self.cursor
        if self.trained_cursor is not None:
            self.cursor = PromptCursor(**self.trained_cursor)
        try:
            return super().save()
        finally:
            self.cursor = live

    def restore(self, folder):
        digest = super().restore(folder)
        self._clear_pipeline()
        self.next_batch = self.iteration
        self.trained_cursor = self.cursor.state_dict()
        self._push_adapter(wait=True)
        return digest

    # ----- the pipeline -------------------------------------------------------------------------------------------
    def _job(self, b: int) -> dict:
        c, r = self.cfg, self.cfg.rollout
        if b not in self.jobs:
            prompts = [self.prompts[i] for i in self.cursor.take(c.run.prompts_per_iteration)]
            self.cursor_after[b] = self.cursor.state_dict()
            self.jobs[b] = {
                "batch_id": b, "prompts": prompts, "prompt_ids": [p.ids for p in prompts],
                "questions": [p.text for p in prompts], "references": [p.reference for p in prompts],
                "n": r.samples_per_prompt, "max_new_tokens": r.max_new_tokens, "temperature": r.temperature,
                "top_p": r.top_p, "seed": c.run.seed * 100_003 + b, "env": r.env, "rule": c.reward.rule,
                "max_turns": r.max_turns, "response_prefix": c.prompts.response_prefix,
            }
        return self.jobs[b]

    def _submit(self, worker: int, b: int) -> None:
        job = {k: v for k, v in self._job(b).items() if k != "prompts"}
        self.inflight[self.rollout.actors[worker].rollout.remote(job)] = (worker, b)

    def _fill(self) -> None:
        """Hand the next batches to idle workers while they stay within the staleness bound and the run's length."""
        busy = {w for w, _ in self.inflight.values()}
        for w in range(len(self.rollout)):
            if w in busy:
                continue
            if self.regenerate:
                self._submit(w, self.regenerate.pop(0))
                continue
            if self.next_batch >= self.cfg.run.iterations or self.next_batch - self.iteration > self.cfg.algo.max_staleness:
                return
            self._submit(w, self.next_batch)
            self.next_batch += 1

    def _collect(self, ref) -> None:
        worker, b = self.inflight.pop(ref)
        try:
            self.ready[b] = ray.get(ref)
        except RayActorError as exc:  # the worker died: replace it, send it the adapter, generate batch b again
            self.rollout_restarts += 1
            self.lost_batches.append(b)
            if self.rollout_restarts > self.cfg.run.max_actor_restarts:
                raise
            print(f"[ppo] rollout worker {worker} died ({type(exc).__name__}) generating batch {b}; replacing it "
                  f"(restart {self.rollout_restarts}/{self.cfg.run.max_actor_restarts})", flush=True)
            self.rollout.replace(worker)
            self._push_adapter([worker])
            self._submit(worker, b)

    def step(self) -> dict:
        a = self.cfg.algo
        t0 = time.perf_counter()
        b = self.iteration
        while True:
            self._fill()
            out = self.ready.pop(b, None)
            if out is not None:
                if self.iteration - out["version"] <= a.max_staleness:
                    break
                self.stale_dropped += 1  # cannot happen with the admission rule above; regenerate rather than train on it
                self.regenerate.append(b)
                continue
            ready, _ = ray.wait(list(self.inflight), num_returns=1)
            self._collect(ready[0])
        t_ready = time.perf_counter()
        job = self.jobs.pop(b)
        n = job["n"]
        samples = Samples([p for p in job["prompts"] for _ in range(n)], out["responses"],
                          loss_masks=out.get("loss_masks"), rollout_logp=out["rollout_logp"],
                          env_rewards=out.get("env_rewards"), texts=out.get("texts"))
        lag = self.iteration - out["version"]
        metrics = self.learn(samples, job["seed"], t0, t_ready)
        self.trained_cursor = self.cursor_after.pop(b)
        self._push_adapter()  # version self.iteration (just incremented) to every worker, without waiting
        metrics.update({
            "batch_id": b, "sample_version": out["version"], "policy_lag": lag, "max_staleness": a.max_staleness,
            "rollout_worker": out["worker"], "rollout_restarts": self.rollout_restarts,
            "seconds_waiting": t_ready - t0, "batches_ahead": len(self.inflight) + len(self.ready),
        })
        if "tool_calls" in out:
            count = len(out["tool_calls"])
            metrics.update({"tool_call_rate": sum(x > 0 for x in out["tool_calls"]) / count,
                            "tool_calls_mean": sum(out["tool_calls"]) / count,
                            "tool_error_rate": sum(out["tool_errors"]) / max(1, sum(out["tool_calls"])),
                            "turns_mean": sum(out["turns"]) / count})
        return metrics

    def stop_actors(self) -> None:
        super().stop_actors()
        self._clear_pipeline()


def make_driver(cfg, run_dir) -> PPODriver:
    """The driver for ``algo.mode``: PPODriver (sync) or AsyncPPODriver."""
    return (AsyncPPODriver if cfg.algo.mode == "async" else PPODriver)(cfg, run_dir)
