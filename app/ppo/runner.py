"""Start a PPO run from a validated config: Ray up, run folder chosen, driver looped, actors released."""

from __future__ import annotations

from pathlib import Path

from app.config.loader import config_hash
from app.config.ppo import PPOConfig
from app.launch.runtime import init_ray, run_name_for, storage_root


def run_dir_for(cfg: PPOConfig) -> Path:
    """``run.output_dir`` or ``<storage root>/<run name>``; the same config resumes the same folder."""
    if cfg.run.output_dir:
        return Path(cfg.run.output_dir).expanduser().resolve()
    root = storage_root(cfg.ray)
    if "://" in root:
        raise ValueError("PPO run folders must be local or shared filesystems (set run.output_dir)")
    return Path(root) / run_name_for("ppo", config_hash(cfg), cfg.ray)


def run_ppo(cfg: PPOConfig) -> tuple[Path, list[dict]]:
    """Run (or resume) PPO to ``run.iterations``; returns the run folder and the per-iteration metrics."""
    from app.ppo.async_driver import make_driver

    init_ray(cfg.ray)
    run_dir = run_dir_for(cfg)
    driver = make_driver(cfg, run_dir)
    try:
        if driver.iteration:
            print(f"[ppo] resuming {run_dir} at iteration {driver.iteration}", flush=True)
        history = driver.run()
    finally:
        driver.shutdown()
    return run_dir, history
