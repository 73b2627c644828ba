"""The Ray dashboard's Prometheus endpoint on a local run lists rayalign's training metrics (tokens/s, loss, step).

A real tiny SFT run (app.train.run.run_sft: tiny Llama, LoRA, 1 worker, 6 steps) on the session's local Ray;
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


def _scrape(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = {}
    for line in body.splitlines():
        m = re.match(r"^(ray_rayalign_train_\w+)\{([^}]*)\} (\S+)$", line)
        if m and 'run="metrics-probe"' in m.group(2):
            found[m.group(1)] = float(m.group(3))
    return found


def test_prometheus_endpoint_lists_training_metrics(ray_local, tmp_path):
    from app.config.loader import load_config
    from app.config.sft import SFTConfig
    from app.train.run import run_sft

    node = next(n for n in ray_local.nodes() if n["Alive"])
    port = int(node["MetricsExportPort"])
    artifact = _artifact_double(tmp_path / "artifact")
    cfg = load_config(REPO_ROOT / "configs/tiny/sft_lora.yaml", SFTConfig, [
        f"data.artifact={artifact}", f"ray.storage_path={tmp_path / 'runs'}", "ray.run_name=metrics-probe",
        "train.max_steps=6", "checkpoint.every_steps=6", "scaling.num_workers=1", "scaling.cpus_per_worker=1",
    ])
    outcome: dict = {}
    trainer = threading.Thread(target=lambda: outcome.setdefault("result", run_sft(cfg)), daemon=True)
    trainer.start()
    seen: dict[str, float] = {}
    deadline = time.time() + 240
    while time.time() < deadline and not all(k in seen for k in WANTED):
        seen.update(_scrape(port))
        if not trainer.is_alive() and not all(k in seen for k in WANTED):
            seen.update(_scrape(port))
            break
        time.sleep(1.0)
    trainer.join(timeout=240)
    assert outcome["result"].status == "completed"
    missing = [k for k in WANTED if k not in seen]
    assert not missing, f"not on http://127.0.0.1:{port}/metrics: {missing} (seen: {sorted(seen)})"
    assert seen["ray_rayalign_train_loss"] > 0 and seen["ray_rayalign_train_tokens_per_s"] > 0
    assert 1 <= seen["ray_rayalign_train_step"] <= 6
