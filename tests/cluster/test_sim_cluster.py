"""The simulated cluster helper: named nodes, a whole-node kill takes its raylet and workers, a replacement joins."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.e2e]


def gone(pid: int) -> bool:
    """Dead, or a zombie nobody reaped (in a container the reaper may be missing): either way not running."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_kill_a_node_and_add_a_replacement():
    import os
    import time

    import ray

    from app.launch.sim_cluster import SimCluster

    @ray.remote(num_cpus=1)
    class Pinned:
        def pid(self) -> int:
            return os.getpid()

    with SimCluster(head_cpus=1) as sim:
        sim.add_node("a", cpus=1)
        sim.add_node("b", cpus=1)
        ray.init(address=sim.address)
        actor = Pinned.options(resources={"sim_node_b": 0.01}, max_restarts=1).remote()
        pid = ray.get(actor.pid.remote(), timeout=60)
        sim.kill_node("b")
        assert gone(pid)  # the node's worker died with its raylet
        deadline = time.time() + 60
        while any(n["Alive"] and "sim_node_b" in n["Resources"] for n in ray.nodes()):
            assert time.time() < deadline, "the killed node is still alive in the GCS"
            time.sleep(0.5)
        assert any(n["Alive"] and "sim_node_a" in n["Resources"] for n in ray.nodes())
        sim.add_node("b", cpus=1)  # the replacement carries the same label: the actor restarts there
        assert ray.get(actor.pid.remote(), timeout=120) != pid
