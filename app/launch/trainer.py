"""The one place that builds Ray Train objects: ScalingConfig, RunConfig, FailureConfig, TorchTrainer.

Workers get a SIGTERM handler on their MAIN thread before any training code runs (Ray Train runs the loop in a
separate thread, where ``signal.signal`` is not allowed): a small TorchConfig whose backend installs it in
``on_start``. Resume is by name: the same ``RunConfig(name, storage_path)`` makes ``ray.train.get_checkpoint()``
return the run's latest checkpoint (Ray 2.60 Train V2 has no ``resume_from_checkpoint``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.train.torch.config import _TorchBackend

from app.config.common import ScalingSpec
from app.train.checkpoint import install_sigterm_handler


class _PreemptibleTorchBackend(_TorchBackend):
    def on_start(self, worker_group, backend_config):
        super().on_start(worker_group, backend_config)
        installed = worker_group.execute(install_sigterm_handler)
        if not all(installed):
            raise RuntimeError("could not install the SIGTERM handler on every training worker's main thread")


@dataclass
class PreemptibleTorchConfig(TorchConfig):
    """TorchConfig (gloo on CPU, nccl on GPU) plus a SIGTERM → checkpoint-and-stop handler on every worker."""

    @property
    def backend_cls(self):
        return _PreemptibleTorchBackend


def build_trainer(
    loop: Callable[[dict[str, Any]], Any],
    loop_config: dict[str, Any],
    scaling: ScalingSpec,
    run_name: str,
    storage_path: str,
    datasets: dict[str, Any] | None = None,
    keep_checkpoints: int = 3,
) -> TorchTrainer:
    """A TorchTrainer whose datasets are NOT split (each rank picks its rows deterministically, see batches.py)."""
    from ray.data import ExecutionOptions

    resources = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = 1
    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        torch_config=PreemptibleTorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints),
        ),
        datasets=datasets or {},
        dataset_config=DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)),
    )
