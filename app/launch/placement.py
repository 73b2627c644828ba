"""Placement-group hygiene for sweeps: release the worker reservations of TorchTrainers that Tune killed.

An ASHA-stopped trial's actor is killed mid-``fit()``; its Train controller dies with it, and the workers'
placement group (scoped to the job, not to the controller) stays reserved. Ray Train 2.60's own
``PlacementGroupCleaner`` asks the state API whether the controller lives, which needs the dashboard (off on our
local clusters) — its monitor thread dies and the reservation is never returned, so on a 2-CPU machine the next
trial waits for CPUs until its worker-group start-up times out.
"""

from __future__ import annotations

import logging
import time

import ray
from ray.tune import Callback

log = logging.getLogger(__name__)


def release_orphaned_placement_groups() -> list[str]:
    """Remove live, non-detached placement groups created by an actor that is now dead; returns their ids (hex).

    Placement groups a driver created (Tune's per-trial reservations) carry a nil creator actor and are never touched.

    Reads the GCS placement-group table directly (``creator_actor_dead`` is not in the public
    ``ray.util.placement_group_table()`` view); the same rule the Train cleaner applies per run.
    """
    from ray._private.state import state
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    released = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        created_by_actor = bool(pg.creator_actor_id) and not ray.ActorID(pg.creator_actor_id).is_nil()  # nil: a driver
        if (created_by_actor and pg.creator_actor_dead and not pg.is_detached
                and pg.state != gcs_pb2.PlacementGroupTableData.REMOVED):
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(pg.placement_group_id)))
            released.append(pg.placement_group_id.hex())
            log.info("released placement group %s left by a killed trial", released[-1])
    return released


class ReleaseOrphanedPlacementGroups(Callback):
    """Tune callback: every ``every_s`` seconds of the Tune loop, release orphaned worker placement groups."""

    def __init__(self, every_s: float = 5.0):
        self.every_s = every_s
        self._last = 0.0
        self.released: list[str] = []

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        try:
            self.released += release_orphaned_placement_groups()
        except Exception as exc:  # noqa: BLE001 - a private Ray API: never let it break the sweep
            log.warning("orphaned placement group scan failed: %s", exc)
