"""Ray Train's TorchTrainer without the two helper actors a rayalign run cannot use.

Ray Train V2 starts, next to its controller, one actor per callback that needs a process of its own. Two of them do
nothing for rayalign's runs and each is a Python process more on the node: it takes ~1 s of CPU to start, and once
started wakes every 10 ms (Ray's core-worker signal check) next to the training threads, which on a CPU node whose
cores all go to training is what slows the steps (``benchmarks/train_overhead.py``):

- ``DatasetManager`` (``DatasetsCallback``) serves Ray Dataset shards. Every rayalign loop streams its own rows
  from Parquet (``app/train/batches.py``) and passes no Ray Dataset, yet Ray starts it for an empty ``datasets``.
  It is left out only when ``datasets`` is empty; a trainer given a Dataset keeps it.
- ``PlacementGroupCleaner`` (``PlacementGroupCleanerCallback``) removes the run's placement group if the
  controller dies with the driver gone, and asks the State API every second whether the controller lives. The
  State API is served by the dashboard: a local cluster started with ``include_dashboard=False`` (``ray.lean``,
  ``RAYALIGN_DASHBOARD=0``, the tests) runs only a minimal dashboard process that does not serve it, so the
  cleaner logs "Failed to query Ray Train Controller actor state" once a second for the whole run and can never
  act. Left out only on such a cluster (``state_api_available``): in the driver that started it and in its Ray
  processes, e.g. a Tune trial, which builds its trainer in a worker; that private cluster ends with its driver,
  placement groups included, and a sweep on it releases a killed trial's placement group itself
  (``app/launch/placement.py``). On a joined cluster it stays.

Both are found by class, from Ray's own modules: ``tests/launch/test_torch_trainer.py`` fails if Ray renames them.
"""

from __future__ import annotations

from ray.train.torch import TorchTrainer


def unused_callback_types(has_datasets: bool, has_state_api: bool) -> tuple[type, ...]:
    """The Ray Train callback classes a run with (or without) Ray Datasets, on a cluster with (or without) the
    State API, leaves out."""
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    return (() if has_datasets else (DatasetsCallback,)) + (() if has_state_api else (PlacementGroupCleanerCallback,))


def state_api_available() -> bool:
    """False only on a local cluster started without the dashboard: ``init_ray`` says so in the environment
    (``STATE_API_ENV``) that the driver and the cluster's processes share. Without that variable (a cluster
    rayalign did not start), a process that started its cluster without the dashboard has a node object with no
    web UI URL; any other process (joined, or a Ray worker) answers True: keep the cleaner."""
    import os

    import ray._private.worker as worker

    from app.launch.runtime import STATE_API_ENV

    if os.environ.get(STATE_API_ENV) in ("0", "1"):
        return os.environ[STATE_API_ENV] == "1"
    node = getattr(worker, "_global_node", None)
    if node is None or not hasattr(node, "webui_url"):  # not connected, or a Ray without the attribute: keep it
        return True
    return bool(node.webui_url)


class RayalignTorchTrainer(TorchTrainer):
    """``TorchTrainer`` minus the callbacks ``unused_callback_types`` names for this run and cluster."""

    def _create_default_callbacks(self):
        callbacks = super()._create_default_callbacks()
        drop = unused_callback_types(bool(self.datasets), state_api_available())
        return [cb for cb in callbacks if not isinstance(cb, drop)]
