"""The Ray dashboard's Prometheus endpoint on a local run lists rayalign's training metrics (tokens/s, loss, step).

A real tiny SFT run (app.launch.run.run_sft: tiny Llama, LoRA, 1 worker, 6 steps) on the session's local Ray;
while it trains we scrape the node's metrics-export port (what Prometheus, and the Grafana dashboard in
raycluster/grafana/, read) until the ``rayalign_train_*`` gauges of this run appear. Ray prefixes custom
metrics with ``ray_``.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
import urllib.request

import pytest

from app.config.paths import REPO_ROOT

pytestmark = pytest.mark.ray

WANTED = ("ray_rayalign_train_tokens_per_s", "ray_rayalign_train_loss", "ray_rayalign_train_step")


def _artifact_double(folder):
    """The train area's named test double for a packed SFT artifact (same Parquet columns as the data contract)."""
    spec = importlib.util.spec_from_file_location("train_artifact_double", REPO_ROOT / "tests" / "train" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_packed_artifact_double(folder, n_rows=24)


def _scrape(port: int, seen: dict[str, float], errors: list[str]) -> None:
    """One GET of the node's Prometheus endpoint; records this run's rayalign_train_* samples into ``seen``."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError as exc:  # a busy agent can time out; the next poll retries
        errors.append(repr(exc))
        return
    for line in body.splitlines():
        m = re.match(r"^(ray_rayalign_train_\w+)\{([^}]*)\} (\S+)$", line)
        if m and 'run="metrics-probe"' in m.group(2):
            seen[m.group(1)] = float(m.group(3))


def test_prometheus_endpoint_lists_training_metrics(ray_local, tmp_path):
    from app.config.loader import load_config
    from app.config.sft import SFTConfig
    from app.launch.run import run_sft

    node = next(n for n in ray_local.nodes() if n["Alive"])
    port = int(node["MetricsExportPort"])
    artifact = _artifact_double(tmp_path / "artifact")
    cfg = load_config(REPO_ROOT / "configs/tiny/sft_lora.yaml", SFTConfig, [
        f"data.artifact={artifact}", f"ray.storage_path={tmp_path / 'runs'}", "ray.run_name=metrics-probe",
        "train.max_steps=6", "checkpoint.every_steps=6", "scaling.num_workers=1", "scaling.cpus_per_worker=1",
    ])
    seen: dict[str, float] = {}
    errors: list[str] = []
    done = threading.Event()

    def poll() -> None:  # scrape while the run trains: what a Prometheus server would see
        while not done.is_set():
            _scrape(port, seen, errors)
            done.wait(0.5)

    scraper = threading.Thread(target=poll, daemon=True)
    scraper.start()
    try:
        result = run_sft(cfg)
    finally:
        done.set()
        scraper.join(timeout=30)
    deadline = time.time() + 30  # the agent may still hold the last values briefly after the worker exits
    while time.time() < deadline and not all(k in seen for k in WANTED):
        _scrape(port, seen, errors)
        time.sleep(1)
    assert result.status == "completed"
    missing = [k for k in WANTED if k not in seen]
    assert not missing, f"not on :{port}/metrics: {missing}; seen {sorted(seen)}; errors {errors[-3:]}"
    assert seen["ray_rayalign_train_loss"] > 0 and seen["ray_rayalign_train_tokens_per_s"] > 0
    assert 1 <= seen["ray_rayalign_train_step"] <= 6
