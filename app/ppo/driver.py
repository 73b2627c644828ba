"""The PPO loop on a Ray actor group (Ouyang et al. 2022 / Ziegler et al. 2019), with GRPO and RLOO behind the same loop.

One iteration:  prompts (cursor) -> rollout (HF in the policy actor, or vLLM with the synced adapter)
  -> in parallel: rewards (RewardActor shards), old log-probs (policy), reference log-probs (adapter disabled or a
     ReferenceActor), values (ValueActor)
  -> core: per-token KL (k1/k2/k3) -> shaped rewards -> GAE(gamma, lambda) + whitening  |  group baselines (grpo/rloo)
  -> in parallel: PPO epochs on the policy (clipped surrogate) and the critic (clipped value loss)
  -> adaptive KL controller -> adapter-only sync to the rollout engine -> checkpoint -> MLflow.
A dead actor (node loss, OOM, kill) is replaced and the run restored from its last checkpoint.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import ray
import torch
from ray.exceptions import RayActorError

from app.config.loader import config_hash, dump_config
from app.config.ppo import PPOConfig
from app.core.advantages import AdaptiveKLController, compute_gae, group_advantages, kl_estimate, shape_rewards, whiten
from app.core.rewards import RULE_COMPONENTS, combine_rewards
from app.models.loader import resolve_model
from app.ppo.actors import PolicyActor, ReferenceActor, RewardActor, ValueActor
from app.core.importance import correction
from app.ppo.batch import Samples, build_batch, pad_rows
from app.ppo.group import RayActorGroup, RoleResources, plan_placement, split_evenly
from app.ppo.preflight import check_inputs
from app.ppo.prompts import PromptCursor, load_prompts, prompt_dataset_id
from app.ppo.rollout import VLLMEngineActor
from app.train import checkpoint as ckpt

KEEP_SYNC_FOLDERS = 3  # vLLM: adapter folders kept on disk (an engine or worker only ever loads the newest it was sent)


def prune_sync_folders(root: Path, version: int, keep: int = KEEP_SYNC_FOLDERS) -> None:
    """Remove ``root/v<N>`` folders with ``N <= version - keep`` (a long run would otherwise fill the disk)."""
    import shutil

    for old in root.glob("v*"):
        if old.name[1:].isdigit() and int(old.name[1:]) <= version - keep:
            shutil.rmtree(old, ignore_errors=True)


class PPODriver:
    """Owns the actor group and the loop state (iteration, prompt cursor, KL controller, metrics history)."""

    def __init__(self, cfg: PPOConfig, run_dir: str | Path):
        from transformers import AutoTokenizer

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.run_dir / "config.yaml")
        self.model = resolve_model(cfg.model)
        self.parents = check_inputs(cfg, self.model.base_sha)  # bad SFT adapter / reward model: one line, no actors yet
        self.tokenizer = AutoTokenizer.from_pretrained(self.model.path)
        self.turn_end = end_of_turn(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        p = cfg.prompts
        self.prompts = load_prompts(p.path, self.tokenizer, p.system_prompt, p.split, p.max_prompts, p.max_prompt_tokens,
                                    p.max_solution_steps, p.response_prefix)
        self.restarts = 0
        self.placement = None
        self._reset_loop_state()
        self.start_actors()
        self.restore(ckpt.latest_run_checkpoint(self.run_dir))

    # ----- actors -------------------------------------------------------------------------------------------------
    def _reset_loop_state(self) -> None:
        a = self.cfg.algo
        self.iteration = 0
        self.cursor = PromptCursor(len(self.prompts), self.cfg.prompts.shuffle_seed)
        self.kl_ctl = AdaptiveKLController(a.init_kl_coef, a.target_kl, a.kl_horizon)
        self.history: list[dict] = []
        self.mlflow_run_id: str | None = None

    def start_actors(self) -> None:
        """Reserve the placement group and start every role; returns when all actors answer."""
        c, pl = self.cfg, self.cfg.placement
        gpu = pl.gpus_per_role
        roles = {"policy": RoleResources(pl.policy_cpus, gpu), "reward": RoleResources(pl.reward_cpus)}
        if c.algo.estimator == "gae":
            roles["value"] = RoleResources(pl.value_cpus, gpu)
        if pl.reference == "actor":
            roles["reference"] = RoleResources(pl.reference_cpus, gpu)
        if c.rollout.backend == "vllm" and c.algo.mode == "sync":  # async: the rollout workers are the vLLM engines
            roles["engine"] = RoleResources(pl.rollout_cpus, gpu)
        roles.update(self.extra_roles())
        self.placement = plan_placement(roles, pl.colocate)
        path, lora, algo = str(self.model.path), c.lora.model_dump(), c.algo.model_dump()
        seed, threads = c.run.seed, pl.torch_threads
        init = c.init
        self.policy = RayActorGroup("policy", PolicyActor, roles["policy"], self.placement, path, lora, algo, seed, threads,
                                    init.adapter, init.reference)
        self.reward = RayActorGroup("reward", RewardActor, roles["reward"], self.placement, c.reward.kind, c.reward.rule,
                                    c.reward.model_path, 1, c.reward.model_batch_size)
        self.value = (RayActorGroup("value", ValueActor, roles["value"], self.placement, path, lora, algo, seed, threads)
                      if "value" in roles else None)
        ref_adapter = init.adapter if init.reference == "init" else None
        self.reference = (RayActorGroup("reference", ReferenceActor, roles["reference"], self.placement, path, seed,
                                        threads, ref_adapter)
                          if "reference" in roles else None)
        r = c.rollout
        self.engine = (RayActorGroup("engine", VLLMEngineActor, roles["engine"], self.placement, path, r.vllm_max_loras,
                                     r.vllm_max_lora_rank, c.prompts.max_prompt_tokens + r.max_new_tokens, seed,
                                     r.vllm_gpu_memory_utilization, r.vllm_kv_cache_gb, r.vllm_cpu_threads_bind)
                       if "engine" in roles else None)
        self.start_extra_actors(roles)
        ray.get([ref for g in self.groups() for ref in g.call("ping")])

    def extra_roles(self) -> dict[str, RoleResources]:
        """Roles a subclass adds to the placement group (async mode: rollout workers)."""
        return {}

    def start_extra_actors(self, roles: dict[str, RoleResources]) -> None:
        """Start the roles of ``extra_roles`` (after the built-in ones, same placement group)."""

    def groups(self) -> list[RayActorGroup]:
        return [g for g in (self.policy, self.reward, self.value, self.reference, self.engine) if g is not None]

    def stop_actors(self) -> None:
        for g in self.groups():
            g.kill()
        if self.placement is not None:
            self.placement.remove()
            self.placement = None

    # ----- checkpoints --------------------------------------------------------------------------------------------
    def save(self) -> Path:
        """Actors write their weights + optimizers into a staging folder; the manifest (driver state) goes last."""
        stage = ckpt.stage_run_checkpoint(self.run_dir, self.iteration)
        refs = [self.policy.call_one("save_state", str(stage))]
        if self.value:
            refs.append(self.value.call_one("save_state", str(stage)))
        ray.get(refs)
        state = ckpt.TrainState(config_hash=config_hash(self.cfg), step=self.iteration, history=self.history,
                                tracking_run_id=self.mlflow_run_id)
        extra = {"cursor": self.cursor.state_dict(), "kl_ctl": self.kl_ctl.state_dict()}
        return ckpt.commit_run_checkpoint(self.run_dir, state, extra, self.cfg.run.keep_checkpoints)

    def restore(self, folder: Path | None) -> str | None:
        """Load actors + loop state from ``folder`` (None: fresh start). Returns the policy weights digest."""
        self._reset_loop_state()
        if folder is None:
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
            self._sync_engine()  # the engine starts from the policy's initial adapter (the SFT one, or a fresh LoRA)
            return None
        state, extra = ckpt.load_state(folder), ckpt.read_manifest(folder)["extra"]
        self.iteration = state.step
        self.cursor = PromptCursor(**extra["cursor"])
        self.kl_ctl = AdaptiveKLController.from_state_dict(extra["kl_ctl"])
        self.history, self.mlflow_run_id = state.history, state.tracking_run_id
        refs = [self.policy.call_one("load_state", str(folder))]
        if self.value:
            refs.append(self.value.call_one("load_state", str(folder)))
        digest = ray.get(refs)[0]
        (self.run_dir / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in self.history), encoding="utf-8")
        self._sync_engine()
        return digest

    def _sync_engine(self) -> float:
        """Adapter-only weight sync: the policy writes its LoRA adapter, the engine serves it as a new version."""
        if self.engine is None:
            return 0.0
        t0 = time.perf_counter()
        version = self.iteration + 1
        folder = self._write_sync_adapter(version)
        ray.get(self.engine.call_one("load_adapter", folder, version))
        return time.perf_counter() - t0

    def _write_sync_adapter(self, version: int) -> str:
        """The policy's LoRA adapter written to ``<run>/sync/v<version>`` for vLLM engines; returns the folder once
        it is on disk (before any engine reads it). Folders older than the newest ``KEEP_SYNC_FOLDERS`` are removed."""
        folder = self.run_dir / "sync" / f"v{version:06d}"
        ray.get(self.policy.call_one("save_adapter", str(folder)))
        prune_sync_folders(self.run_dir / "sync", version)
        return str(folder)

    # ----- one iteration ------------------------------------------------------------------------------------------
    def step(self) -> dict:
        c, r = self.cfg, self.cfg.rollout
        seed = c.run.seed * 100_003 + self.iteration
        t0 = time.perf_counter()
        prompts = [self.prompts[i] for i in self.cursor.take(c.run.prompts_per_iteration)]
        n = r.samples_per_prompt
        generator = self.engine or self.policy
        with_logp = c.algo.is_correction != "none"  # the rollout's own log-probs, for TIS/MIS
        out = ray.get(generator.call_one("generate", [p.ids for p in prompts], n, r.max_new_tokens, r.temperature,
                                         r.top_p, seed, **({"with_logprobs": True} if with_logp else {})))
        responses, rollout_logp = out if with_logp else (out, None)
        samples = Samples([p for p in prompts for _ in range(n)], responses, rollout_logp=rollout_logp)
        return self.learn(samples, seed, t0, time.perf_counter())

    def learn(self, samples: Samples, seed: int, t0: float, t_gen: float) -> dict:
        """Score, advantage and train on one batch of rollouts (sync: just generated; async: from a rollout worker);
        ends with ``iteration += 1`` and the engine sync. ``t0``/``t_gen``: when the step began / samples were ready."""
        c, a, r = self.cfg, self.cfg.algo, self.cfg.rollout
        n = r.samples_per_prompt
        rep, responses = samples.prompts, samples.responses
        batch = build_batch([p.ids for p in rep], responses, self.pad_id, samples.loss_masks)
        if samples.texts is None:
            # the reward sees the whole assistant turn: the pre-filled prefix plus what the policy generated
            generated = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
            texts = [c.prompts.response_prefix + t for t in generated]
        else:
            generated = texts = samples.texts
        if samples.env_rewards is None:
            # a reward model reads the conversation as it was trained on it: prompt (with the prefix) + reply + end of turn
            conversations = [p.text + g + self.turn_end for p, g in zip(rep, generated)]
            shards = list(zip(*(split_evenly(x, len(self.reward)) for x in
                                (conversations, texts, [p.reference for p in rep]))))
            score_refs = self.reward.call_shards("score", shards)
        logp_ref = self.policy.call_one("logprobs", batch)
        ref_ref = (self.reference.call_one("logprobs", batch) if self.reference
                   else self.policy.call_one("logprobs", batch, reference=True))
        value_ref = self.value.call_one("values", batch) if self.value else None
        if samples.env_rewards is None:
            parts = ray.get(score_refs)
            components = {k: [s for part in parts for s in part[k]] for k in parts[0]}
        else:  # the environment scored its episodes with the rule
            components = {"rule": list(samples.env_rewards)}
        lengths = [int(x) for x in batch.response_mask.sum(1)]
        scores = torch.tensor(self._combine(components, lengths), dtype=torch.float32)
        logp, ref_logp = ray.get([logp_ref, ref_ref])
        values = ray.get(value_ref) if value_ref is not None else None
        t_score = time.perf_counter()

        mask = batch.response_mask
        kl = kl_estimate(logp, ref_logp, a.kl_estimator) * mask
        beta = self.kl_ctl.value
        if a.estimator == "gae":
            token_rewards = shape_rewards(scores, kl, mask, beta)
            adv, returns = compute_gae(token_rewards, values, mask, a.gamma, a.lam)
            if a.whiten_advantages:
                adv = whiten(adv, mask)
        else:
            seq_adv = group_advantages(scores - beta * kl.sum(1), n, a.estimator)
            adv, returns = seq_adv[:, None] * mask, None
        is_stats, is_args = {}, ()
        if samples.rollout_logp is not None:  # rollout vs trainer log-probs: TIS / MIS (diagnostics even with 'none')
            rollout_logp = pad_rows(samples.rollout_logp, mask.shape[1])
            weights, is_mask, info = correction(a.is_correction, logp, rollout_logp, mask, a.is_cap, a.is_low, a.is_level)
            is_stats = {k: float(v) for k, v in info.items()}
            if a.is_correction != "none":
                is_args = (weights, is_mask)
        refs = [self.policy.call_one("update", batch, logp, adv, seed, *is_args)]
        if self.value:
            refs.append(self.value.call_one("update", batch, values, returns, seed))
        stats = {}
        for part in ray.get(refs):
            stats.update(part)
        t_train = time.perf_counter()

        seq_kl = float(kl.sum(1).mean())
        self.kl_ctl.update(seq_kl, n_steps=len(rep))
        self.iteration += 1
        t_sync = self._sync_engine()
        lengths = mask.sum(1)
        source_means = {{"model": "rm_score", "rule": "rule_score"}[k]: sum(v) / len(v) for k, v in components.items()}
        metrics = {
            "iteration": self.iteration, "reward_mean": float(scores.mean()), "reward_std": float(scores.std()),
            "kl": seq_kl, "kl_coef": beta, "response_length": float(lengths.mean()),
            "truncated_frac": float((lengths >= r.max_new_tokens).float().mean()),
            "empty_reply_frac": sum(1 for g in generated if not g.strip()) / len(generated),  # reward hacking by silence
            **source_means,  # 'rm_score' and 'rule_score' (rule-verified accuracy) side by side under reward.kind=sum
            **stats, **is_stats,
            "seconds_generation": t_gen - t0, "seconds_scoring": t_score - t_gen, "seconds_training": t_train - t_score,
            "seconds_sync": t_sync, "seconds_iteration": time.perf_counter() - t0,
        }
        if c.reward.kind in ("rule", "sum"):  # components of the verifiable reward: is it learning the answer or only the format?
            for name, fn in RULE_COMPONENTS.get(c.reward.rule, {}).items():
                metrics[name] = sum(fn(t, p.reference) for t, p in zip(texts, rep)) / len(rep)
        metrics["sample"] = texts[0][:200]
        return metrics

    def _combine(self, components: dict[str, list[float]], lengths: list[int]) -> list[float]:
        rw = self.cfg.reward
        weights = ({"rule": 1.0, "model": 1.0} if rw.kind != "sum"
                   else {"rule": rw.rule_weight, "model": rw.model_weight})
        return combine_rewards(components, weights, lengths, rw.length_penalty, rw.length_penalty_free_tokens,
                               rw.min_reply_tokens, rw.short_reply_penalty)

    # ----- the loop -----------------------------------------------------------------------------------------------
    def run(self, on_iteration=None) -> list[dict]:
        """Iterate until ``run.iterations``; checkpoint, log, survive dead actors. ``on_iteration(driver, metrics)``
        is called after each completed iteration (progress printing, tests)."""
        mlflow = self._start_mlflow()
        try:
            while self.iteration < self.cfg.run.iterations:
                try:
                    metrics = self.step()
                except RayActorError as exc:
                    self.restarts += 1
                    if self.restarts > self.cfg.run.max_actor_restarts:
                        raise
                    print(f"[ppo] actor died ({type(exc).__name__}); restoring from last checkpoint "
                          f"(restart {self.restarts}/{self.cfg.run.max_actor_restarts})", flush=True)
                    self.stop_actors()
                    self.start_actors()
                    self.restore(ckpt.latest_run_checkpoint(self.run_dir))
                    continue
                self.history.append(metrics)
                with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(metrics) + "\n")
                if mlflow:
                    mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)}, step=self.iteration)
                print(f"[ppo] iter {self.iteration}/{self.cfg.run.iterations} reward {metrics['reward_mean']:.3f} "
                      f"kl {metrics['kl']:.3f} len {metrics['response_length']:.1f} "
                      f"({metrics['seconds_iteration']:.1f}s)", flush=True)
                if self.iteration % self.cfg.run.checkpoint_every == 0 or self.iteration == self.cfg.run.iterations:
                    self.save()
                if on_iteration:
                    on_iteration(self, metrics)
            self.export(mlflow)
        finally:
            if mlflow and mlflow.active_run():
                mlflow.end_run()
        return self.history

    def _start_mlflow(self):
        if not self.cfg.tracking.enabled:
            return None
        from app.tracking.mlflow_store import configure_mlflow

        mlflow = configure_mlflow(self.cfg.tracking)
        run = mlflow.start_run(run_id=self.mlflow_run_id, run_name=None if self.mlflow_run_id else self.run_dir.name)
        if self.mlflow_run_id is None:
            self.mlflow_run_id = run.info.run_id
            mlflow.log_params({"method": self.cfg.algo.estimator, "config_hash": config_hash(self.cfg),
                               "model": self.cfg.model.source, "rollout": self.cfg.rollout.backend,
                               "lora_r": self.cfg.lora.r, "lr": self.cfg.algo.lr})
        return mlflow

    def export(self, mlflow=None) -> Path:
        """Write the final adapter (peft layout + rayalign_lineage.json) and the reward/KL plot."""
        from app.ppo.plot import plot_history

        out = self.run_dir / "adapter"
        plot = plot_history(self.history, self.run_dir / "ppo_curves.png", target_kl=self.cfg.algo.target_kl)
        if not self.cfg.lora.enabled:
            return plot
        ray.get(self.policy.call_one("save_adapter", str(out)))
        last = self.history[-1] if self.history else {}
        lineage = {
            "base_model_source": self.cfg.model.source, "base_sha": self.model.base_sha,
            "dataset_id": prompt_dataset_id(self.cfg.prompts.path), "config_hash": config_hash(self.cfg),
            "method": {"gae": "ppo", "grpo": "grpo", "rloo": "rloo"}[self.cfg.algo.estimator],
            "lora": ray.get(self.policy.call_one("adapter_shape")),
            "metrics": {k: last[k] for k in ("reward_mean", "kl", "response_length", "rm_score", "rule_score")
                        if k in last} | {"iterations": self.iteration},
            # parents: the SFT adapter the policy started from, the reward model, and the datasets behind each
            "parents": self.parents | {"reference": self.cfg.init.reference if self.cfg.init.adapter else "base",
                                       "reward": self.cfg.reward.model_dump()},
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
        (out / "rayalign_lineage.json").write_text(json.dumps(lineage, indent=1), encoding="utf-8")
        if mlflow:
            mlflow.log_artifact(str(plot))
            mlflow.log_artifacts(str(out), artifact_path="adapter")
        return out

    def shutdown(self) -> None:
        self.stop_actors()


def end_of_turn(tokenizer) -> str:
    """What the chat template writes after an assistant message (ChatML: '<|im_end|>\\n'); '' when undetectable."""
    marker = "@@REPLY@@"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}],
                                         tokenize=False)
    return text.split(marker, 1)[1] if marker in text else ""
