"""RayalignTorchTrainer (app/launch/torch_trainer.py): Ray Train's DatasetManager and PlacementGroupCleaner actors
are left out where they can do nothing (no Ray Dataset; a private cluster whose minimal dashboard serves no State
API), and only there."""

from __future__ import annotations

import pytest

from app.config.common import ScalingSpec
from app.launch.torch_trainer import unused_callback_types
from app.launch.trainer import build_trainer


def test_callbacks_left_out_by_run_and_cluster_are_rays_own_classes():
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    assert set(unused_callback_types(False, False)) == {DatasetsCallback, PlacementGroupCleanerCallback}
    assert unused_callback_types(False, True) == (DatasetsCallback,)
    assert unused_callback_types(True, False) == (PlacementGroupCleanerCallback,)
    assert unused_callback_types(True, True) == ()


def report_once(config):
    import ray.train

    ray.train.report({"x": 1.0})


def actor_classes() -> dict[str, str]:
    """{actor id: class name} of every actor the cluster has had (the GCS actor table: readable without the
    dashboard's State API; its order is not the order of creation)."""
    import ray._private.state as state

    return {actor_id: a["ActorClassName"] for actor_id, a in state.actors().items()}


@pytest.mark.ray
def test_a_fit_on_a_cluster_without_dashboard_starts_neither_helper_actor(ray_local, tmp_path):
    from app.launch.torch_trainer import state_api_available

    assert not state_api_available()  # the tests' private cluster runs no dashboard (tests/conftest.py)
    before = actor_classes()
    trainer = build_trainer(report_once, {}, ScalingSpec(num_workers=1, cpus_per_worker=1), "no-helpers", str(tmp_path))
    names = {type(cb).__name__ for cb in trainer._create_default_callbacks()}
    assert "BackendSetupCallback" in names and not names & {"DatasetsCallback", "PlacementGroupCleanerCallback"}
    trainer.fit()
    started = [name for actor_id, name in actor_classes().items() if actor_id not in before]
    assert "TrainController" in started and "RayTrainWorker" in started  # the run did start its actors
    assert not {"DatasetManager", "PlacementGroupCleaner"} & set(started), started


def test_state_api_answer_follows_what_init_ray_recorded(monkeypatch):
    from app.launch.runtime import STATE_API_ENV
    from app.launch.torch_trainer import state_api_available

    monkeypatch.setenv(STATE_API_ENV, "0")
    assert not state_api_available()
    monkeypatch.setenv(STATE_API_ENV, "1")
    assert state_api_available()


@pytest.mark.ray
def test_a_process_of_that_cluster_leaves_the_cleaner_out_too(ray_local):
    """A Tune trial builds its trainer in a Ray worker: the worker inherits the driver's answer, not its own guess
    (a worker's node object has the minimal dashboard's URL, which would keep the cleaner)."""
    import ray

    @ray.remote(num_cpus=0)
    def answer():
        import ray._private.worker as worker

        from app.launch.torch_trainer import state_api_available

        return state_api_available(), bool(worker._global_node.webui_url)

    assert ray.get(answer.remote()) == (False, True)
