"""RayActorGroup: N replicas of one role pinned to placement-group bundles, with fan-out calls and gather.

``plan_placement`` turns per-role resources into one placement group: colocated roles share a single bundle (their
fractional CPUs/GPUs add up; on a GPU node several models share one GPU), disaggregated roles get a bundle each
(``PACK`` here, ``SPREAD`` across a cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@dataclass(frozen=True)
class RoleResources:
    """Resources of one replica of a role."""

    num_cpus: float
    num_gpus: float = 0.0
    replicas: int = 1


@dataclass
class Placement:
    """A placement group plus which bundle each role's replicas sit on."""

    group: object
    bundle_of: dict[str, list[int]]

    def remove(self) -> None:
        remove_placement_group(self.group)


def plan_bundles(roles: dict[str, RoleResources], colocate: bool) -> tuple[list[dict], dict[str, list[int]]]:
    """Bundles and role -> bundle indices. Colocated: one bundle holding every replica of every role; else one per replica."""
    bundles: list[dict] = []
    bundle_of: dict[str, list[int]] = {}
    if colocate:
        cpus = sum(r.num_cpus * r.replicas for r in roles.values())
        gpus = sum(r.num_gpus * r.replicas for r in roles.values())
        bundles.append({"CPU": cpus, **({"GPU": gpus} if gpus else {})})
        return bundles, {name: [0] * r.replicas for name, r in roles.items()}
    for name, r in roles.items():
        bundle_of[name] = []
        for _ in range(r.replicas):
            bundle_of[name].append(len(bundles))
            bundles.append({"CPU": r.num_cpus, **({"GPU": r.num_gpus} if r.num_gpus else {})})
    return bundles, bundle_of


def plan_placement(roles: dict[str, RoleResources], colocate: bool, strategy: str = "PACK", timeout_s: float = 60) -> Placement:
    """Reserve the bundles (blocks until the cluster can host them, or raises after ``timeout_s``)."""
    bundles, bundle_of = plan_bundles(roles, colocate)
    pg = placement_group(bundles, strategy=strategy)
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(pg)
        raise RuntimeError(f"placement group {bundles} could not be scheduled in {timeout_s:.0f}s (cluster too small?)")
    return Placement(pg, bundle_of)


class RayActorGroup:
    """Replicas of ``cls`` on their bundles. ``call`` fans one call out to every replica; ``call_shards`` sends one
    shard each; ``gather`` waits. Replicas are restartable by Ray (``max_restarts``) but the driver decides how to
    restore state (see ``app.ppo.driver``)."""

    def __init__(self, name: str, cls: type, resources: RoleResources, placement: Placement, *args, **kwargs):
        self.name = name
        self._spawn = lambda b: ray.remote(cls).options(
            num_cpus=resources.num_cpus,
            num_gpus=resources.num_gpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(placement.group, placement_group_bundle_index=b),
            name=None,
        ).remote(*args, **kwargs)
        self.bundles = list(placement.bundle_of[name])
        self.actors = [self._spawn(b) for b in self.bundles]

    def __len__(self) -> int:
        return len(self.actors)

    def call(self, method: str, *args, **kwargs) -> list:
        """Same call on every replica; returns object refs."""
        return [getattr(a, method).remote(*args, **kwargs) for a in self.actors]

    def call_shards(self, method: str, shards: list[tuple], **kwargs) -> list:
        """Replica ``i`` gets ``shards[i]`` as positional args; returns object refs."""
        if len(shards) != len(self.actors):
            raise ValueError(f"{self.name}: {len(shards)} shards for {len(self.actors)} replicas")
        return [getattr(a, method).remote(*s, **kwargs) for a, s in zip(self.actors, shards)]

    def call_one(self, method: str, *args, **kwargs):
        """Call replica 0 (roles with a single trainable replica); returns one object ref."""
        return getattr(self.actors[0], method).remote(*args, **kwargs)

    @staticmethod
    def gather(refs):
        return ray.get(refs)

    def replace(self, i: int):
        """Start a fresh replica ``i`` (same class, arguments and bundle) in place of a dead one; returns it."""
        ray.kill(self.actors[i], no_restart=True)
        self.actors[i] = self._spawn(self.bundles[i])
        return self.actors[i]

    def kill(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)


def split_evenly(items: list, parts: int) -> list[list]:
    """Contiguous, nearly equal shards (for fanning a batch out over replicas)."""
    k, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + k + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out
