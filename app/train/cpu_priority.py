"""CPU priority of a CPU training worker's own threads: the compute threads keep theirs, Ray's helper threads yield.

A Ray Train worker process holds more than the training: Ray's core-worker threads (gRPC, event loops; some wake
~100 times a second), the thread that answers the controller's polls, gloo's TCP loop. On a node whose cores are all
given to the training threads (``cpus_per_worker`` = torch threads = cores), each wake-up of one of them preempts an
OpenMP thread, and the other OpenMP thread then waits for it at the next barrier: a little helper CPU costs about
twice as much training time. ``benchmarks/train_overhead.py`` measured the OpenMP threads of a Ray Train worker
runnable-but-waiting 8.7-10.8 % of the time (400-520 involuntary switches/s), against 0.3-1.3 % for the same loop
run bare (20-60 switches/s).

    name_compute_thread()        # first thing in the train thread: its OpenMP team (created later) inherits the name
    lower_helper_threads(19)     # after the first step: every other thread of the process to niceness 19

Raising a thread's niceness needs no privilege (lowering it back does: the change is one-way, which is why only a
thread that is not the train thread's and not its OpenMP team's is touched). Linux ``comm`` names are inherited by
threads a thread creates, so the OpenMP (and inter-op) threads the train thread starts carry its name. Helpers still
run whenever a core is free, only they no longer preempt the compute threads.

When: CPU training with one worker only (``WorkerSession``): with several workers gloo's collective threads (which
carry the name of the thread that built the process group, not ours) move gradients each step and must keep their
priority; on a GPU the CPU threads are not the compute. ``RAYALIGN_HELPER_THREAD_NICE`` (driver environment, handed
to the workers by ``app/launch/trainer.py::worker_env``) sets the niceness; ``0`` turns this off.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

TRAIN_THREAD_NAME = "rayalign-train"  # Linux comm: at most 15 bytes
HELPER_NICE_ENV = "RAYALIGN_HELPER_THREAD_NICE"
DEFAULT_HELPER_NICE = "19"
_TASKS = Path("/proc/self/task")


def helper_nice() -> int:
    """The niceness helper threads get (``RAYALIGN_HELPER_THREAD_NICE``, default 19, 0 = off), clamped to 0..19."""
    raw = os.environ.get(HELPER_NICE_ENV, DEFAULT_HELPER_NICE)
    try:
        return min(19, max(0, int(raw)))
    except ValueError:
        raise ValueError(f"{HELPER_NICE_ENV}={raw!r}: expected an integer niceness 0..19 (0 turns it off)") from None


def thread_names() -> dict[int, str]:
    """{thread id: comm name} of this process's threads (empty where /proc is missing)."""
    out = {}
    for entry in _TASKS.iterdir() if _TASKS.is_dir() else ():
        try:
            out[int(entry.name)] = (entry / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            pass
    return out


def name_compute_thread(name: str = TRAIN_THREAD_NAME) -> bool:
    """Give the calling thread the Linux name ``name``; threads it creates afterwards (its OpenMP team) inherit it.
    False where the name cannot be set (no /proc)."""
    try:
        (_TASKS / str(threading.get_native_id()) / "comm").write_text(name[:15])
        return True
    except OSError:
        return False


def lower_helper_threads(nice: int, compute_threads: int, name: str = TRAIN_THREAD_NAME) -> list[int]:
    """Set every thread of this process not named ``name`` to niceness ``nice`` (never lowering one); returns the
    thread ids changed. Does nothing when fewer than ``compute_threads`` threads carry ``name`` (the OpenMP team was
    started before the name was set, so the compute threads cannot be told apart) or when ``nice`` is 0."""
    names = thread_names()
    if nice <= 0 or sum(n == name[:15] for n in names.values()) < compute_threads:
        return []
    changed = []
    for tid, comm in names.items():
        if comm == name[:15]:
            continue
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed.append(tid)
        except OSError:  # ended meanwhile
            pass
    if changed:
        log.info("niceness %d for %d helper threads of this worker (the %s threads keep theirs)", nice, len(changed), name)
    return changed
