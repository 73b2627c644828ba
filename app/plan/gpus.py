"""The GPU catalog the planner chooses from: usable memory, a rough price for ranking, and AWS/GCP machine types.

Prices are approximate on-demand list prices in USD per GPU-hour (2025), used only to rank options; SkyPilot picks
the real cheapest zone at launch. Memory is what ``nvidia-smi`` reports as total (MiB).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GPU:
    """One accelerator type as SkyPilot names it."""

    name: str
    memory_mib: int
    usd_per_hour: float
    bf16_tflops: float  # dense peak, from the vendor datasheet
    aws: dict[int, str] = field(default_factory=dict)  # GPUs per node -> instance type
    gcp: dict[int, str] = field(default_factory=dict)  # GPUs per node -> machine type (accelerators attached for T4/L4 families)

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


CATALOG: dict[str, GPU] = {
    g.name: g
    for g in [
        GPU("L4", 23034, 0.85, 121, {1: "g6.xlarge", 4: "g6.12xlarge", 8: "g6.48xlarge"},
            {1: "g2-standard-8", 4: "g2-standard-48", 8: "g2-standard-96"}),
        GPU("A10G", 23028, 1.01, 70, {1: "g5.xlarge", 4: "g5.12xlarge", 8: "g5.48xlarge"}),
        GPU("L40S", 46068, 1.86, 362, {1: "g6e.xlarge", 4: "g6e.12xlarge", 8: "g6e.48xlarge"}),
        GPU("A100", 40960, 3.67, 312, {8: "p4d.24xlarge"},
            {1: "a2-highgpu-1g", 2: "a2-highgpu-2g", 4: "a2-highgpu-4g", 8: "a2-highgpu-8g"}),
        GPU("A100-80GB", 81920, 5.12, 312, {8: "p4de.24xlarge"},
            {1: "a2-ultragpu-1g", 2: "a2-ultragpu-2g", 4: "a2-ultragpu-4g", 8: "a2-ultragpu-8g"}),
        GPU("H100", 81559, 6.88, 989, {8: "p5.48xlarge"}, {8: "a3-highgpu-8g"}),
        GPU("H200", 143771, 9.98, 989, {8: "p5e.48xlarge"}, {8: "a3-ultragpu-8g"}),
    ]
}


def gpu(name: str) -> GPU:
    """Catalog entry for a SkyPilot accelerator name; a ValueError lists the known ones."""
    if name not in CATALOG:
        raise ValueError(f"unknown GPU type {name!r} (known: {', '.join(CATALOG)})")
    return CATALOG[name]


def node_shapes(g: GPU) -> list[int]:
    """GPUs-per-node counts some cloud offers for this GPU (ascending)."""
    return sorted(set(g.aws) | set(g.gcp))
