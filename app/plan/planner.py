"""Choose GPU type, count and ZeRO stage for a training run, and emit SkyPilot / ray-up / Ray Train settings.

    stats = count_model_params(read_hf_config(cfg.hf_config, folder), cfg.method, ...)
    plan = plan_capacity(cfg, stats)      # every (GPU, count, strategy) tried; plan.chosen is the cheapest that fits
    skypilot_resources(plan.chosen, cfg.hardware)   # {"num_nodes": .., "resources": {...}}

Memory per GPU = model states + activations (app.core.memory, DeepSpeed accounting) + a fixed overhead; an option
fits when that is at most ``usable_fraction`` of the GPU's memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.config.plan import PlanConfig, PlanHardware
from app.core.memory import NF4_BYTES_PER_PARAM, ModelStates, activation_bytes, model_state_bytes
from app.plan.gpus import GPU, gpu, node_shapes
from app.plan.model_stats import ModelStats

GIB = 2**30
STAGES = {"ddp": 0, "zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3}


@dataclass(frozen=True)
class Option:
    """One candidate layout and its per-GPU memory."""

    gpu: GPU
    n_gpus: int
    gpus_per_node: int
    strategy: str
    offload: str
    states: ModelStates
    activations: float
    overhead: float
    usable_bytes: float

    @property
    def stage(self) -> int:
        return STAGES[self.strategy]

    @property
    def nodes(self) -> int:
        return self.n_gpus // self.gpus_per_node

    @property
    def per_gpu_bytes(self) -> float:
        return self.states.total + self.activations + self.overhead

    @property
    def fits(self) -> bool:
        return self.per_gpu_bytes <= self.usable_bytes

    @property
    def usd_per_hour(self) -> float:
        return self.n_gpus * self.gpu.usd_per_hour

    def as_dict(self) -> dict:
        return {
            "gpu": self.gpu.name, "n_gpus": self.n_gpus, "nodes": self.nodes, "gpus_per_node": self.gpus_per_node,
            "strategy": self.strategy, "zero_stage": self.stage, "offload": self.offload,
            "per_gpu_gib": round(self.per_gpu_bytes / GIB, 2), "gpu_gib": round(self.gpu.memory_gib, 1),
            "weights_gib": round(self.states.weights / GIB, 2), "grads_gib": round(self.states.grads / GIB, 2),
            "optimizer_gib": round(self.states.optimizer / GIB, 2), "activations_gib": round(self.activations / GIB, 2),
            "overhead_gib": round(self.overhead / GIB, 2), "cpu_offload_gib": round(self.states.cpu / GIB, 2),
            "fits": self.fits, "usd_per_hour": round(self.usd_per_hour, 2),
        }


@dataclass
class Plan:
    """The chosen option (None when nothing fits) and the best option tried per GPU type."""

    stats: ModelStats
    chosen: Option | None
    per_gpu_type: list[Option] = field(default_factory=list)


def estimate_option(cfg: PlanConfig, stats: ModelStats, g: GPU, n_gpus: int, strategy: str,
                    gpus_per_node: int | None = None) -> Option:
    """Per-GPU memory of one layout: ``n_gpus`` of ``g`` (``gpus_per_node`` each) running ``strategy`` with ``cfg``'s method and batch."""
    if cfg.method == "full":
        trainable, frozen, frozen_bpp = stats.total_params, 0, 2.0
    else:
        trainable, frozen = stats.adapter_params, stats.total_params
        quantized = stats.quantizable_params if cfg.method == "qlora" else 0
        frozen_bpp = (quantized * NF4_BYTES_PER_PARAM + (frozen - quantized) * 2.0) / frozen
    states = model_state_bytes(
        trainable, frozen, stage=STAGES[strategy], n_gpus=n_gpus, offload=cfg.offload,
        frozen_bytes_per_param=frozen_bpp, largest_layer_params=stats.largest_layer_params,
    )
    acts = activation_bytes(stats.shape, cfg.seq_len, cfg.micro_batch, cfg.grad_checkpointing, cfg.flash_attention)
    hw = cfg.hardware
    return Option(
        gpu=g, n_gpus=n_gpus, gpus_per_node=gpus_per_node or min(n_gpus, hw.gpus_per_node), strategy=strategy, offload=cfg.offload,
        states=states, activations=acts, overhead=hw.overhead_gib * GIB, usable_bytes=hw.usable_fraction * g.memory_mib * 2**20,
    )


def candidate_layouts(g: GPU, hw: PlanHardware) -> list[tuple[int, int]]:
    """(total GPUs, GPUs per node) to try: single nodes the clouds offer, then 2, 4, 8... full nodes."""
    shapes = [c for c in node_shapes(g) if c <= hw.gpus_per_node]
    if not shapes:
        return []
    full = max(shapes)
    layouts = [(c, c) for c in shapes]
    nodes = 2
    while full * nodes <= hw.max_gpus:
        layouts.append((full * nodes, full))
        nodes *= 2
    if hw.gpu_count is not None:
        per_node = max((c for c in shapes if hw.gpu_count % c == 0), default=None)
        return [(hw.gpu_count, per_node)] if per_node else []
    return [(n, k) for n, k in layouts if n <= hw.max_gpus]


def _strategies(cfg: PlanConfig) -> list[str]:
    names = ["ddp", "zero1", "zero2", "zero3"] if cfg.parallelism == "auto" else [cfg.parallelism]
    if cfg.offload != "none":
        names = [s for s in names if STAGES[s] >= (3 if cfg.offload == "optimizer+params" else 1)]
    return names


def _rank(o: Option, objective: str) -> tuple:
    cost = o.usd_per_hour if objective == "hourly_price" else o.gpu.usd_per_hour / o.gpu.bf16_tflops
    return (round(cost, 6), o.n_gpus, o.stage)


def plan_capacity(cfg: PlanConfig, stats: ModelStats) -> Plan:
    """Try every GPU type x count x strategy; choose the best-ranked option that fits (lowest stage on ties)."""
    hw = cfg.hardware
    per_type: list[Option] = []
    fitting: list[Option] = []
    for name in hw.gpu_types:
        g = gpu(name)
        tried = [estimate_option(cfg, stats, g, n, s, k) for n, k in candidate_layouts(g, hw) for s in _strategies(cfg)]
        ok = sorted((o for o in tried if o.fits), key=lambda o: _rank(o, hw.objective))
        fitting += ok
        if ok:
            per_type.append(ok[0])
        elif tried:
            per_type.append(min(tried, key=lambda o: o.per_gpu_bytes / o.usable_bytes))
    chosen = min(fitting, key=lambda o: _rank(o, hw.objective)) if fitting else None
    return Plan(stats=stats, chosen=chosen, per_gpu_type=per_type)


def skypilot_resources(o: Option, hw: PlanHardware) -> dict:
    """A SkyPilot task fragment: ``num_nodes`` + ``resources`` (spot first on each cloud, then on-demand)."""
    resources: dict = {"accelerators": f"{o.gpu.name}:{o.gpus_per_node}"}
    offered = {"aws": o.gpu.aws, "gcp": o.gpu.gcp}  # drop clouds the catalog knows lack this node shape
    clouds = [c for c in hw.clouds if c not in offered or o.gpus_per_node in offered[c]] or [None]
    if hw.use_spot:
        order = [(c, True) for c in clouds] + [(c, False) for c in clouds]
        resources["ordered"] = [{**({"cloud": c} if c else {}), "use_spot": spot} for c, spot in order]
    elif clouds != [None]:
        resources["any_of"] = [{"cloud": c} for c in clouds]
    return {"num_nodes": o.nodes, "resources": resources}


def ray_up_workers(o: Option, hw: PlanHardware) -> dict:
    """The GPU worker group for raycluster/*.yaml and the matching Ray Train ScalingConfig."""
    group: dict = {"min_workers": 0, "max_workers": o.nodes, "resources": {"GPU": o.gpus_per_node}}
    if o.gpus_per_node in o.gpu.aws:
        group["aws_instance_type"] = o.gpu.aws[o.gpus_per_node]
    if o.gpus_per_node in o.gpu.gcp:
        group["gcp_machine_type"] = o.gpu.gcp[o.gpus_per_node]
    group["spot"] = hw.use_spot
    scaling = {"num_workers": o.n_gpus, "use_gpu": True, "resources_per_worker": {"GPU": 1}}
    return {"gpu_workers": group, "scaling_config": scaling, "strategy": o.strategy, "zero_stage": o.stage}
