"""Every training entry of sky/, raycluster/ and raycluster/kuberay/ runs on the GPUs its file provisions.

For each launch file: find the job command (SkyPilot ``run``, a RayJob's ``entrypoint``, or the command a ray-up /
RayCluster file documents), resolve its config with the command's overrides (SkyPilot's GPU count filled in per
accelerator alternative), and check the job asks for GPU workers (one per provisioned GPU: NCCL), bf16, a GPU
MFU peak, and a strategy whose per-GPU memory (the planner's estimate, app/plan/planner.py) fits that GPU.
A config without ``scaling.use_gpu`` would train on CPU with gloo next to idle GPUs.
"""

from __future__ import annotations

from functools import lru_cache

import pytest

from tests.scale.launch_files import launch_entries, training_launch_files

SEQ_LEN = 2048  # rows per packed example assumed for the memory check (our ingest configs pack 512; margin)
# Model shapes by config source, written out (no download; the bundled model's converted folder may not exist yet)
HF_CONFIGS = {
    "bundled:smollm2-135m-instruct": {
        "model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True},
    "meta-llama/Llama-3.1-8B-Instruct": {
        "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 14336,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256},
    "meta-llama/Llama-3.1-70B-Instruct": {
        "model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 80, "intermediate_size": 28672,
        "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256},
}
FILES = training_launch_files()
ENTRIES = [e for f in FILES for e in launch_entries(f)]


def planner_strategy(cfg) -> str:
    kind = cfg.strategy.kind
    return {"ddp": "ddp", "fsdp2": "fsdp"}.get(kind) or f"zero{cfg.strategy.zero_stage}"


@lru_cache(maxsize=None)
def model_stats(source: str, method: str, r: int, alpha: int, targets: tuple[str, ...] | str):
    from app.plan.model_stats import count_model_params, read_hf_config

    hf = read_hf_config(HF_CONFIGS[source], None)
    return count_model_params(hf, method, r, alpha, targets if isinstance(targets, str) else list(targets))


def memory_option(entry, cfg):
    """The planner's per-GPU memory estimate for this config on this entry's GPUs."""
    from app.config.plan import PlanConfig
    from app.plan.gpus import gpu
    from app.plan.planner import estimate_option

    targets = cfg.lora.target_modules if isinstance(cfg.lora.target_modules, str) else tuple(cfg.lora.target_modules)
    stats = model_stats(cfg.model.source, cfg.method, cfg.lora.r, cfg.lora.alpha, targets)
    n = cfg.scaling.num_workers
    plan = PlanConfig(method=cfg.method, seq_len=SEQ_LEN, micro_batch=cfg.train.micro_batch_size,
                      grad_checkpointing=cfg.train.grad_checkpointing, flash_attention=True,
                      parallelism=planner_strategy(cfg),
                      offload="optimizer" if cfg.strategy.kind == "deepspeed" and cfg.strategy.offload_optimizer else "none",
                      hardware={"gpu_types": [entry.gpu], "gpus_per_node": max(1, min(n, entry.gpus_per_node))})
    return estimate_option(plan, stats, gpu(entry.gpu), n, planner_strategy(cfg), max(1, min(n, entry.gpus_per_node)))


def test_every_training_launch_file_is_found():
    names = {f.name for f in FILES}
    assert {"train_spot.yaml", "ray_cluster.yaml", "train_burst.yaml", "train_burst_ordered.yaml", "rayjob.yaml",
            "raycluster.yaml", "aws.yaml", "gcp.yaml"} <= names
    assert all(e.gpu for e in ENTRIES), [e.label for e in ENTRIES if not e.gpu]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.label)
def test_launch_entry_trains_on_the_gpus_it_provisions(entry):
    cfg = entry.load()
    where = f"{entry.file} runs {entry.config_path.name} {' '.join(entry.overrides)}"
    assert cfg.scaling.use_gpu, f"{where}: scaling.use_gpu is false: it would train on CPU (gloo) next to {entry.gpu} GPUs"
    n = cfg.scaling.num_workers
    if entry.exact:
        assert n == entry.nodes * entry.gpus_per_node, (
            f"{where}: {n} GPU workers, but the file provisions {entry.nodes} x {entry.gpus_per_node} {entry.gpu}")
    else:
        assert 1 <= n <= entry.max_gpus, f"{where}: {n} GPU workers, the file can provision at most {entry.max_gpus}"
    half = cfg.model.dtype == "bfloat16" or (cfg.method == "qlora" and cfg.quant.compute_dtype == "bfloat16")
    assert cfg.use_bf16 and half, f"{where}: not bf16 (train.bf16={cfg.train.bf16}, model.dtype={cfg.model.dtype})"
    peak = cfg.output.peak_flops  # None: the GPU datasheet table by device name (app/core/flops.py)
    assert peak is None or peak >= 1e13, f"{where}: output.peak_flops {peak:g} is a CPU peak; MFU would be wrong"
    option = memory_option(entry, cfg)
    assert option.fits, (
        f"{where}: strategy {planner_strategy(cfg)} needs {option.per_gpu_bytes / 2**30:.1f} GiB per {entry.gpu} "
        f"(usable {option.usable_bytes / 2**30:.1f} GiB)")


def test_a_cpu_config_on_a_gpu_file_is_refused(tmp_path):
    """The check itself can fail: today's CPU config behind a SkyPilot L4 task is caught with a named reason."""
    import yaml

    from app.config.paths import REPO_ROOT

    task = yaml.safe_load((REPO_ROOT / "sky" / "train_spot.yaml").read_text())
    task["envs"]["CONFIG"] = "configs/sft/smollm2_lora_gsm8k.yaml"
    sky = tmp_path / "sky"
    sky.mkdir()
    (sky / "cpu_config.yaml").write_text(yaml.safe_dump(task))
    entries = launch_entries(sky / "cpu_config.yaml")
    assert entries
    with pytest.raises(AssertionError, match="scaling.use_gpu is false"):
        test_launch_entry_trains_on_the_gpus_it_provisions(entries[0])
