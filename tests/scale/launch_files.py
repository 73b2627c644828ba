"""What a launch file provisions and which training job it runs, read without a cloud.

    entries = launch_entries(path)     # one LaunchEntry per (training command, hardware alternative)
    entry.cfg                          # the job's config, resolved with the command's key=value overrides
    entry.gpu, entry.gpus_per_node, entry.nodes, entry.max_gpus

Launch files covered: SkyPilot tasks (sky/*.yaml: the ``run`` script, with ``envs`` and SkyPilot's own
SKYPILOT_NUM_NODES / SKYPILOT_NUM_GPUS_PER_NODE filled in per accelerator alternative), KubeRay RayJobs
(``spec.entrypoint``) and the ``python -m jobs.…`` commands the ray-up / RayCluster files document in their header
comments (those are the commands a user copies). GPU types are SkyPilot names (app/plan/gpus.py).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from app.config.paths import REPO_ROOT
from app.plan.gpus import CATALOG

JOB_SCHEMAS = {"jobs.sft": ("app.config.sft", "SFTConfig")}  # the training jobs launch files run today
GKE_ACCELERATORS = {"nvidia-l4": "L4", "nvidia-tesla-a100": "A100", "nvidia-a100-80gb": "A100-80GB",
                    "nvidia-h100-80gb": "H100", "nvidia-h200-141gb": "H200", "nvidia-l40s": "L40S"}
CONTAINER_REPO = "/home/ray/rayalign/"  # the image's working directory (raycluster/Dockerfile)


@dataclass(frozen=True)
class LaunchEntry:
    """One training command of a launch file on one hardware alternative it provisions."""

    file: str
    module: str  # jobs.sft, ...
    config_path: Path
    overrides: tuple[str, ...]
    gpu: str | None  # SkyPilot accelerator name, None for a CPU-only alternative
    gpus_per_node: int
    nodes: int
    max_gpus: int  # what the file can provision at most (autoscaling groups), >= nodes * gpus_per_node
    exact: bool  # True: the job should use exactly nodes * gpus_per_node GPUs (SkyPilot, a RayJob's replicas)

    @property
    def label(self) -> str:
        return f"{self.file}:{self.module}@{self.gpu}x{self.gpus_per_node}x{self.nodes}"

    def load(self):
        """The job's config as the job itself would resolve it (schema of ``module``, file + overrides)."""
        import importlib

        from app.config.loader import load_config

        mod, cls = JOB_SCHEMAS[self.module]
        return load_config(self.config_path, getattr(importlib.import_module(mod), cls), list(self.overrides))


def join_continuations(text: str) -> str:
    return re.sub(r"\\\n\s*", " ", text)


def expand(text: str, env: dict[str, str]) -> str:
    """Shell-style ``$VAR``, ``${VAR}`` and ``$((A * B))`` expansion; an unknown variable raises KeyError."""
    def arith(m: re.Match) -> str:
        expr = re.sub(r"\$?\b([A-Z_][A-Z0-9_]*)\b", lambda v: env[v.group(1)], m.group(1))
        if not re.fullmatch(r"[\d\s+*()-]+", expr):
            raise ValueError(f"unsupported arithmetic $(({m.group(1)}))")
        return str(eval(expr))  # noqa: S307 - digits and + - * ( ) only, checked above
    text = re.sub(r"\$\(\((.*?)\)\)", arith, text)
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env[m.group(1) or m.group(2)], text)


def job_commands(script: str, env: dict[str, str]) -> list[list[str]]:
    """argv (from ``python -m jobs.X`` on) of every job command in a shell script, variables expanded.

    Simple ``NAME=value`` assignments earlier in the script are applied first (``WORKERS=$((...))``)."""
    env = dict(env)
    out = []
    for line in join_continuations(script).splitlines():
        assign = re.match(r"^\s*([A-Z_][A-Z0-9_]*)=(.+)$", line)
        if assign and "$(" not in assign.group(2).replace("$((", ""):  # command substitutions are not needed here
            env[assign.group(1)] = " ".join(shlex.split(expand(assign.group(2), env)))
        at = line.find("python -m jobs.")
        if at >= 0:
            out.append(shlex.split(expand(line[at:], env)))
    return out


def parse_job(argv: list[str]) -> tuple[str, Path, tuple[str, ...]]:
    """(module, config path in this repo, overrides) of ``python -m jobs.X --config FILE k=v …``."""
    module = argv[2]
    rest = argv[3:]
    config = rest[rest.index("--config") + 1]
    overrides = tuple(a for i, a in enumerate(rest) if a != "--config" and (i == 0 or rest[i - 1] != "--config"))
    if config.startswith(CONTAINER_REPO):
        config = config[len(CONTAINER_REPO):]
    return module, REPO_ROOT / config, overrides


def _accelerators(value) -> list[tuple[str, int]]:
    if value is None:
        return []
    if isinstance(value, str):
        name, _, count = value.partition(":")
        return [(name, int(count or 1))]
    return [(name, int(count)) for name, count in value.items()]


def sky_alternatives(task: dict) -> list[tuple[str | None, int]]:
    """(accelerator, count per node) of every resource alternative of a SkyPilot task (any_of / ordered / dict)."""
    res = task.get("resources") or {}
    found = _accelerators(res.get("accelerators"))
    for alt in (res.get("any_of") or []) + (res.get("ordered") or []):
        found += _accelerators(alt.get("accelerators", res.get("accelerators")))
    return sorted(set(found)) or [(None, 0)]


def sky_entries(path: Path) -> list[LaunchEntry]:
    task = yaml.safe_load(path.read_text())
    nodes = int(task.get("num_nodes", 1))
    entries = []
    for gpu, count in sky_alternatives(task):
        env = {**{k: str(v) for k, v in (task.get("envs") or {}).items()},
               "SKYPILOT_NUM_NODES": str(nodes), "SKYPILOT_NUM_GPUS_PER_NODE": str(count),
               "SKYPILOT_NODE_RANK": "0", "SKYPILOT_NODE_IPS": "10.0.0.1"}
        for argv in job_commands(task.get("run") or "", env):
            module, config, overrides = parse_job(argv)
            entries.append(LaunchEntry(path.name, module, config, overrides, gpu, count, nodes, nodes * count, True))
    return entries


def _comment_commands(path: Path) -> list[list[str]]:
    header = "\n".join(line.lstrip("#").strip() for line in path.read_text().splitlines() if line.lstrip().startswith("#"))
    return job_commands(header, {})


def _pod_gpu(pod: dict) -> tuple[str | None, int]:
    limits = pod["containers"][0].get("resources", {}).get("limits", {})
    count = int(limits.get("nvidia.com/gpu", 0))
    accel = (pod.get("nodeSelector") or {}).get("cloud.google.com/gke-accelerator")
    return (GKE_ACCELERATORS[accel] if accel else None), count


def kuberay_entries(path: Path) -> list[LaunchEntry]:
    doc = yaml.safe_load(path.read_text())
    spec = doc["spec"]
    cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec
    commands = [shlex.split(spec["entrypoint"])] if "entrypoint" in spec else _comment_commands(path)
    entries = []
    for group in cluster.get("workerGroupSpecs", []):
        gpu, per_pod = _pod_gpu(group["template"]["spec"])
        replicas, most = int(group.get("replicas", 0)), int(group.get("maxReplicas", group.get("replicas", 0)))
        exact = "entrypoint" in spec  # a RayJob runs on the replicas it creates; a RayCluster autoscales up to max
        for argv in commands:
            module, config, overrides = parse_job(argv)
            entries.append(LaunchEntry(path.name, module, config, overrides, gpu, per_pod,
                                       replicas if exact else most, most * per_pod, exact))
    return entries


def _instance_gpu(node_config: dict) -> str | None:
    kind = node_config.get("InstanceType") or node_config.get("machineType")
    for g in CATALOG.values():
        if kind in g.aws.values() or kind in g.gcp.values():
            return g.name
    return None


def ray_up_entries(path: Path) -> list[LaunchEntry]:
    config = yaml.safe_load(path.read_text())
    entries = []
    for node in config["available_node_types"].values():
        per_node = int(node["resources"].get("GPU", 0))
        if per_node == 0:
            continue
        most = int(node.get("max_workers", 0))
        for argv in _comment_commands(path):
            module, cfg_path, overrides = parse_job(argv)
            entries.append(LaunchEntry(path.name, module, cfg_path, overrides, _instance_gpu(node["node_config"]),
                                       per_node, most, most * per_node, False))
    return entries


def launch_entries(path: Path) -> list[LaunchEntry]:
    """Every training command of a launch file, once per hardware alternative it may run on."""
    if path.parent.name == "sky":
        return sky_entries(path)
    if path.parent.name == "kuberay":
        return kuberay_entries(path)
    return ray_up_entries(path)


def training_launch_files() -> list[Path]:
    """The launch files that can start a training job (serve-only files excluded by content: no jobs.* command)."""
    files = [*sorted((REPO_ROOT / "sky").glob("*.yaml")), *sorted((REPO_ROOT / "raycluster").glob("*.yaml")),
             *sorted((REPO_ROOT / "raycluster" / "kuberay").glob("*.yaml"))]
    return [f for f in files if "python -m jobs." in f.read_text()]
