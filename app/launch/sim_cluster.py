"""A multi-node Ray cluster on one machine, for fault drills: kill a whole node (raylet + its workers), add another.

    with SimCluster(head_cpus=1) as sim:                  # head: GCS, Train controller, driver-side tasks
        a = sim.add_node("a", cpus=2)                     # each node: its own raylet, object store, workers
        b = sim.add_node("b", cpus=2)
        ... ray.init(address=sim.address) / run_sft(cfg with ray.address=sim.address) ...
        sim.kill_node("a")                                # SIGKILL raylet + every worker of node a (a lost VM)
        sim.add_node("a2", cpus=2)                        # the replacement a spot fleet or autoscaler brings

Nodes are Ray's own test nodes (``ray.cluster_utils.Cluster``, how Ray simulates multi-node clusters). Each node
also carries a custom resource ``sim_node_<name>`` (1 unit) so work can be pinned to a node by name. Node shapes make
placement deterministic: with ``cpus=2`` per worker node, a head of 1 CPU and Train workers of 2 CPUs, each worker
lands on its own worker node. The environment of this process (``AWS_*`` for S3 storage) reaches every node.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class SimCluster:
    """A head node plus named worker nodes that can be killed abruptly and replaced."""

    def __init__(self, head_cpus: int = 1, object_store_mib: int = 150):
        self.head_cpus = head_cpus
        self.object_store = object_store_mib * 2**20
        self.cluster = None
        self.nodes: dict = {}
        self.events: list[dict] = []

    def __enter__(self) -> "SimCluster":
        import os

        from ray.cluster_utils import Cluster

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        self.cluster = Cluster(initialize_head=True, connect=False, head_node_args={
            "num_cpus": self.head_cpus, "object_store_memory": self.object_store, "resources": {"sim_node_head": 1},
            "include_dashboard": False})
        return self

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_node(self, name: str, cpus: int = 2, resources: dict | None = None):
        """Start a worker node named ``name`` and wait until the cluster sees it."""
        t0 = time.time()
        node = self.cluster.add_node(num_cpus=cpus, object_store_memory=self.object_store,
                                     resources={f"sim_node_{name}": 1, **(resources or {})})
        self.cluster.wait_for_nodes()
        self.nodes[name] = node
        self.events.append({"event": "add", "node": name, "t": time.time(), "start_s": round(time.time() - t0, 2)})
        log.info("node %s up in %.1f s", name, time.time() - t0)
        return node

    def name_of(self, node_id: str) -> str | None:
        """The name of the live node with Ray node id ``node_id`` (hex), e.g. from a placement group's bundle table."""
        return next((name for name, node in self.nodes.items() if node.node_id == node_id), None)

    def kill_node(self, name: str) -> float:
        """Kill node ``name`` abruptly (raylet and its workers, SIGKILL), as a vanished VM; returns the kill time."""
        node = self.nodes.pop(name)
        pids = [p for p in self._descendants(node)]
        t = time.time()
        self.cluster.remove_node(node, allow_graceful=False)
        import os
        import signal

        for pid in pids:  # workers the raylet started: a real VM loss takes them too
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._wait_dead(pids)
        self.events.append({"event": "kill", "node": name, "t": t, "pids": len(pids)})
        log.info("killed node %s (%d processes)", name, len(pids))
        return t

    @staticmethod
    def _wait_dead(pids: list[int], timeout_s: float = 10.0) -> None:
        """Return once every pid is gone or a zombie (SIGKILL is delivered asynchronously; on a loaded 2-core box a
        killed worker can still read as running for a moment), so the node is really down when kill_node returns."""
        import psutil

        deadline = time.time() + timeout_s
        for pid in pids:
            while time.time() < deadline:
                try:
                    if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                        break
                except psutil.NoSuchProcess:
                    break
                time.sleep(0.05)

    @staticmethod
    def _descendants(node) -> list[int]:
        import psutil

        out = []
        for info in node.all_processes.values():
            for p in info:
                if p.process is None:
                    continue
                try:
                    out += [c.pid for c in psutil.Process(p.process.pid).children(recursive=True)]
                except psutil.NoSuchProcess:
                    pass
        return out

    def __exit__(self, *exc) -> None:
        import ray

        ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()
