"""Drill: the README's `ray job submit` sequence (ingest → sft → eval → promote → serve) against a `ray start --head`
cluster; where each job's outputs landed, and that they are still there after `ray stop`.

    python benchmarks/job_submit_drill.py            # ~4 min on 2 cores; writes benchmarks/results/job_submit_drill.json

The cluster is started with HOME pointing at a scratch folder, so the jobs' default rayalign home (``~/.rayalign``,
chosen because a submitted job runs from Ray's temporary copy of the working directory) is that folder's
``.rayalign``; nothing in the clone's ``.rayalign`` is touched. Ports 6391 / 8276 / 8011 keep clear of a default
cluster on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
DASHBOARD = "http://127.0.0.1:8276"
SERVE_PORT = 8011


def sh(*cmd: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def job_lines(log: str, keep: int) -> list[str]:
    """The job's own last lines (without the `ray job submit` client's packaging/websocket chatter)."""
    own = [l for l in log.strip().splitlines() if l.strip() and not re.match(r"^\d{4}-\d\d-\d\d .*\b(INFO|WARNING|ERR)\b", l)]
    return own[-keep:]


def submit(env: dict, *entrypoint: str, wait: bool = True) -> tuple[int, str]:
    # excludes: in a worktree .venv is a symlink, which .gitignore's ".venv/" does not match
    args = [RAY, "job", "submit", "--address", DASHBOARD, "--working-dir", ".",
            "--runtime-env-json", json.dumps({"excludes": [".venv", ".venv-cloud", ".rayalign"]})]
    if not wait:
        args.append("--no-wait")
    out = sh(*args, "--", *entrypoint, env=env)
    return out.returncode, out.stdout + out.stderr


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="rayalign-drill-"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",  # `python` = this env
           "HOME": str(scratch), "RAY_AUTH_MODE": "disabled", "RAYALIGN_API_KEY": "sk-drill",
           "TOKENIZERS_PARALLELISM": "false", "RAYALIGN_SHARED": os.environ.get("RAYALIGN_SHARED", str(REPO.parent / "shared"))}
    env.pop("RAYALIGN_HOME", None)
    env.pop("PYTHONPATH", None)  # the jobs must import the uploaded copy, as on a real cluster
    result: dict = {"home_expected": str(scratch / ".rayalign"), "steps": {}}
    start = sh(RAY, "start", "--head", "--port", "6391", "--dashboard-port", "8276", "--num-cpus", "2",
               "--include-dashboard", "true", "--disable-usage-stats", env=env)
    if start.returncode != 0:
        print(start.stdout + start.stderr)
        return 1
    try:
        t0 = time.time()
        steps = [
            ("ingest", ["python", "-m", "jobs.ingest", "--config", "configs/tiny/ingest_sft.yaml"]),
            ("sft", ["python", "-m", "jobs.sft", "--config", "configs/tiny/sft_lora.yaml", "train.max_steps=3"]),
        ]
        adapter = None
        for name, entry in steps:
            rc, log = submit(env, *entry)
            result["steps"][name] = {"rc": rc, "seconds": round(time.time() - t0, 1), "tail": job_lines(log, 6)}
            t0 = time.time()
            if rc != 0:
                raise SystemExit(f"{name} failed:\n{log[-3000:]}")
            found = re.search(r"^output: (\S+)$", log, re.M)
            adapter = found.group(1) if found else adapter
        result["adapter"] = adapter
        rc, log = submit(env, "python", "-m", "jobs.eval", "--config", "configs/tiny/eval_gates.yaml",
                         f"adapter={adapter}", "registry.name=tiny-sft", "judge.kind=none")
        result["steps"]["eval"] = {"rc": rc, "seconds": round(time.time() - t0, 1), "tail": job_lines(log, 10)}
        t0 = time.time()
        if rc == 0:
            rc, log = submit(env, "python", "-m", "app.cli", "registry", "promote", "tiny-sft", "1", "--publish")
            result["steps"]["promote"] = {"rc": rc, "tail": job_lines(log, 3)}
        rc, log = submit(env, "python", "-m", "jobs.serve", "--config", "configs/tiny/serve_hf.yaml",
                         f"http.port={SERVE_PORT}", wait=False)
        job_id = re.search(r"'(raysubmit_\w+)'", log)
        models, deadline = None, time.time() + 240
        while time.time() < deadline and models is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{SERVE_PORT}/v1/models",
                                             headers={"Authorization": "Bearer sk-drill"})
                models = [m["id"] for m in json.load(urllib.request.urlopen(req, timeout=5))["data"]]
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(3)
        result["steps"]["serve"] = {"models": models, "seconds": round(time.time() - t0, 1)}
        if job_id:
            sh(RAY, "job", "stop", "--address", DASHBOARD, job_id.group(1), env=env)
    finally:
        sh(RAY, "stop", "--force", env=env)
    home = scratch / ".rayalign"
    result["after_ray_stop"] = {
        "datasets": sorted(str(p.relative_to(home)) for p in (home / "datasets").glob("*/v*")),
        "adapter_exists": bool(result.get("adapter")) and Path(result["adapter"]).is_dir(),
        "adapter_under_home": bool(result.get("adapter")) and str(result["adapter"]).startswith(str(home)),
        "published": sorted(str(p.relative_to(home)) for p in (home / "adapters").glob("*/*")) if (home / "adapters").is_dir() else [],
        "registry_db": (home / "registry.db").is_file(),
    }
    out = REPO / "benchmarks" / "results" / "job_submit_drill.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
