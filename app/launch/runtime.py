"""Start or join Ray, and decide where runs store their checkpoints and how they are named.

Local use needs no setup: ``init_ray()`` starts a private cluster (``address="local"``) with token auth off
(Ray 2.60 turns it on by default; a private single-user cluster on 127.0.0.1 does not need it). A given address
or ``auto`` joins an existing cluster and leaves its auth settings alone. ``ray.lean: true`` starts the local
cluster without the dashboard, metrics export, event stats and usage stats (``LEAN_SYSTEM_CONFIG``): on a few
cores its idle daemons otherwise take CPU from the training processes (``benchmarks/train_overhead.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from app.config.common import RaySpec
from app.config.paths import rayalign_home

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Called once with {"dashboard": url | None, "metrics": url | None} when this process starts or joins Ray:
# the console registers one to print the dashboard URL (the launch floor does not print).
_STARTED_HOOKS: list[Callable[[dict], None]] = []


def on_cluster_started(hook: Callable[[dict], None]) -> None:
    """Register ``hook(info)`` to hear the dashboard and metrics URLs when Ray starts in this process."""
    _STARTED_HOOKS.append(hook)


def dashboard_enabled() -> bool:
    """Local clusters start the Ray dashboard unless ``RAYALIGN_DASHBOARD=0`` (tests, ``rayalign --no-dashboard``)."""
    return os.environ.get("RAYALIGN_DASHBOARD", "1") != "0"


def keep_working_directory() -> None:
    """Train workers and Tune trials keep the working directory Ray started them in, as every config path assumes.

    By default Ray Train V2 chdirs each worker, and Tune each trial, into a folder of its own, so a relative path
    in a config (``data.artifact: .rayalign/datasets/…``) that the driver resolved would miss in the workers. Ray
    reads ``RAY_CHDIR_TO_TRIAL_DIR`` in the driver when a run starts and passes it on to the trial actors. Their
    working directory is then the driver's on a local cluster and the job's ``--working-dir`` copy under
    ``ray job submit``. A value the user set is left alone.
    """
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")


def in_submitted_job() -> bool:
    """True in the driver of a ``ray job submit`` job (Ray's job supervisor sets this variable for it)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def resolve_address(address: str) -> str:
    """``local`` means the job's own cluster inside ``ray job submit`` (``auto``): a job never starts a private
    cluster next to the one it was submitted to. Any other address is kept."""
    return "auto" if address == "local" and in_submitted_job() else address


# "0" in a process whose local cluster was started without the dashboard, and in every Ray process of that cluster
# (they inherit the environment of the driver that started it); "1" with the dashboard; unset after joining a cluster.
# Read by app/launch/torch_trainer.py (a cluster without the dashboard serves no State API).
STATE_API_ENV = "RAYALIGN_RAY_STATE_API"

# ``ray.lean``: what a local cluster runs only for the dashboard and metrics (Ray's own system config keys): the
# metrics agent's per-process stats collection and export, and the C++ event-loop statistics of raylet and GCS.
LEAN_SYSTEM_CONFIG = {"enable_metrics_collection": False, "event_stats": False}


def cluster_env(spec: RaySpec) -> dict[str, str]:
    """Environment defaults (a value already set wins) for Ray started by ``init_ray(spec)``, address resolved.

    A private local cluster (``local``) gets: no token auth (single user, this machine); workers at normal priority
    (Ray's default niceness 15 starves Train workers next to the driver on a 2-core box); a longer raylet start-up
    window; no Ray Train PreemptionWatcher (an actor that polls Ray Core every 5 s for nodes being drained, i.e. a
    spot reclaim through an autoscaler: a private cluster on this machine has none, so it is one process less next
    to the training threads; Ray Train hands the driver's value to its controller); with ``lean`` no usage stats
    and no Ray Train metrics (``RAY_TRAIN_METRICS_ENABLED=0``: its controller and worker gauges, which a lean
    cluster neither collects nor exports; the driver reads it when a trainer is built). Joining a cluster changes
    nothing."""
    if spec.address != "local":
        return {}
    env = {"RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0", "RAY_raylet_start_wait_time_s": "180",
           "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
    if spec.lean:
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env["RAY_TRAIN_METRICS_ENABLED"] = "0"
    return env


def init_ray(spec: RaySpec | None = None, **init_kwargs):
    """Start (``local``) or join (``auto`` / ``ray://…`` / ``host:port``) a Ray cluster; idempotent."""
    import ray

    keep_working_directory()
    spec = (spec or RaySpec()).model_copy()
    spec.address = resolve_address(spec.address)
    if ray.is_initialized():
        return ray.get_runtime_context()
    for key, value in cluster_env(spec).items():
        os.environ.setdefault(key, value)
    kwargs = ray_init_kwargs(spec, init_kwargs)
    if spec.address == "local":  # set before ray.init, so the cluster's processes (a Tune trial too) inherit it
        os.environ[STATE_API_ENV] = "1" if kwargs.get("include_dashboard") else "0"
    else:
        os.environ.pop(STATE_API_ENV, None)
    info = ray.init(**kwargs)
    _announce(info)
    return ray.get_runtime_context()


def ray_init_kwargs(spec: RaySpec, init_kwargs: dict | None = None) -> dict:
    """``ray.init``'s arguments for ``spec`` (its address already resolved) plus the caller's ``init_kwargs``."""
    init_kwargs = dict(init_kwargs or {})
    # Worker output streams to the driver unless the quiet console asked otherwise (it keeps a log file instead).
    kwargs = dict(address=spec.address, ignore_reinit_error=True,
                  log_to_driver=os.environ.get("RAYALIGN_LOG_TO_DRIVER", "1") != "0")
    if spec.address == "local":
        kwargs["num_cpus"] = spec.num_cpus
        kwargs["include_dashboard"] = init_kwargs.pop("include_dashboard", dashboard_enabled()) and not spec.lean
        if kwargs["include_dashboard"]:
            kwargs.setdefault("dashboard_host", "127.0.0.1")
        if spec.lean:
            kwargs["_system_config"] = {**LEAN_SYSTEM_CONFIG, **init_kwargs.pop("_system_config", {})}
    kwargs.update(init_kwargs)
    return kwargs


def _announce(info) -> None:
    """Tell the registered hooks where the dashboard and the Prometheus metrics (``rayalign_*`` gauges) are."""
    url = getattr(info, "dashboard_url", None)
    urls = {"dashboard": f"http://{url}" if url and "://" not in url else url, "metrics": None}
    try:
        import ray._private.worker as worker

        node = worker._global_node
        port = getattr(node, "metrics_export_port", None) if node is not None else None
        if port:
            urls["metrics"] = f"http://127.0.0.1:{port}/metrics"
    except Exception:  # noqa: BLE001 - a private attribute; the URL is a convenience
        pass
    for hook in _STARTED_HOOKS:
        hook(urls)


def storage_root(spec: RaySpec | None = None) -> str:
    """Run storage root: the configured local path or ``s3://…`` URI, else ``<home>/runs``."""
    spec = spec or RaySpec()
    if spec.storage_path:
        if "://" in spec.storage_path:  # an object store: reached once at job start (check_run_storage), not here
            return spec.storage_path.rstrip("/")
        path = Path(spec.storage_path).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return str(path)
    path = rayalign_home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def check_run_storage(spec: RaySpec | None = None) -> str:
    """``storage_root(spec)``, and an object-store root is reached now (probe write + delete, app/launch/storage.py):
    a job with an unreachable ``s3://`` storage fails at start with one line, not at its first checkpoint."""
    root = storage_root(spec)
    if "://" in root:
        from app.launch.storage import check_storage_reachable

        check_storage_reachable(root)
    return root


def validate_run_name(name: str) -> str:
    """A run name is a single safe path segment: letters, digits, '.', '_' and '-' (no traversal)."""
    if not _RUN_NAME.match(name) or name in {".", ".."}:
        raise ValueError(f"invalid run name {name!r}: use letters, digits, '.', '_' or '-' (max 128 chars)")
    return name


def run_name_for(kind: str, cfg_hash: str, spec: RaySpec | None = None) -> str:
    """The configured run name, or ``<kind>-<first 10 of config hash>`` so identical configs resume the same run."""
    spec = spec or RaySpec()
    return validate_run_name(spec.run_name or f"{kind}-{cfg_hash[:10]}")
