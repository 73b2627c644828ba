"""Drill: the README's `ray job submit` sequence (ingest → sft → eval → promote → serve) against a `ray start --head`
cluster; where each job's outputs landed, and that they are still there after `ray stop`.

    python benchmarks/job_submit_drill.py            # ~4 min on 2 cores; writes benchmarks/results/job_submit_drill.json

No path is scraped from a job's output: the tiny SFT config writes its adapter to ``${RAYALIGN_HOME}/outputs/tiny-sft``
and the tiny eval config reads it from there, as the README's sequence does. The drill still records whether the
``output: <adapter>`` line reached the job's output, and how many Ray worker lines did (the quiet console keeps
those in its log file).

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
    own = [l for l in log.strip().splitlines() if l.strip() and not re.match(r"^\d{4}-\d\d-\d\d .*\b(INFO|WARNING|ERR|SUCC)\b", l)
           and not l.startswith("Running entrypoint for job")]
    return own[-keep:]


def worker_lines(log: str) -> int:
    """Lines Ray streamed from worker processes (``(RayTrainWorker pid=…) …``): the quiet console keeps them in its log."""
    return sum(1 for l in log.splitlines() if re.match(r"^(\x1b\[\d+m)?\((\w+) pid=\d+", l))


def submit(env: dict, *entrypoint: str, wait: bool = True) -> tuple[int, str]:
    # excludes: in a worktree .venv is a symlink, which .gitignore's ".venv/" does not match
    args = [RAY, "job", "submit", "--address", DASHBOARD, "--working-dir", ".",
            "--runtime-env-json", json.dumps({"excludes": [".venv", ".venv-cloud", ".rayalign"]})]
    if not wait:
        args.append("--no-wait")
    out = sh(*args, "--", *entrypoint, env=env)
    return out.returncode, out.stdout + out.stderr


def step(result: dict, name: str, env: dict, *entrypoint: str) -> tuple[int, str]:
    t0 = time.time()
    rc, log = submit(env, *entrypoint)
    result["steps"][name] = {"command": " ".join(entrypoint), "rc": rc, "seconds": round(time.time() - t0, 1),
                             "worker_lines_in_job_output": worker_lines(log), "job_output_tail": job_lines(log, 12)}
    return rc, log


def chat(prompt: str) -> dict:
    """One OpenAI-style chat request to the submitted Serve app (the drill's key)."""
    body = json.dumps({"model": "tiny-sft", "max_tokens": 4, "messages": [{"role": "user", "content": prompt}]})
    req = urllib.request.Request(f"http://127.0.0.1:{SERVE_PORT}/v1/chat/completions", data=body.encode(),
                                 headers={"Authorization": "Bearer sk-drill", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=120))


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="rayalign-drill-"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",  # `python` = this env
           "HOME": str(scratch), "RAY_AUTH_MODE": "disabled", "RAYALIGN_API_KEY": "sk-drill",
           "TOKENIZERS_PARALLELISM": "false", "RAYALIGN_SHARED": os.environ.get("RAYALIGN_SHARED", str(REPO.parent / "shared"))}
    env.pop("RAYALIGN_HOME", None)
    env.pop("PYTHONPATH", None)  # the jobs must import the uploaded copy, as on a real cluster
    home = scratch / ".rayalign"
    adapter = home / "outputs" / "tiny-sft"  # configs/tiny/sft_lora.yaml's output.dir; configs/tiny/eval_gates.yaml reads it
    result: dict = {"home_expected": str(home), "adapter_expected": str(adapter), "steps": {}}
    start = sh(RAY, "start", "--head", "--port", "6391", "--dashboard-port", "8276", "--num-cpus", "2",
               "--include-dashboard", "true", "--disable-usage-stats", env=env)
    if start.returncode != 0:
        print(start.stdout + start.stderr)
        return 1
    t_all = time.time()
    try:
        for name, entry in [
            ("ingest", ["python", "-m", "jobs.ingest", "--config", "configs/tiny/ingest_sft.yaml"]),
            ("sft", ["python", "-m", "jobs.sft", "--config", "configs/tiny/sft_lora.yaml", "train.max_steps=3"]),
            ("eval", ["python", "-m", "jobs.eval", "--config", "configs/tiny/eval_gates.yaml", "registry.name=tiny-sft",
                      "judge.kind=none"]),
            ("promote", ["python", "-m", "app.cli", "registry", "promote", "tiny-sft", "1", "--publish"]),
        ]:
            rc, log = step(result, name, env, *entry)
            if name == "sft":
                printed = re.search(r"^output: (\S+)$", log, re.M)
                result["steps"]["sft"]["printed_output"] = printed.group(1) if printed else None
            if rc != 0:
                break
        else:
            t0 = time.time()
            rc, log = submit(env, "python", "-m", "jobs.serve", "--config", "configs/tiny/serve_hf.yaml",
                             f"http.port={SERVE_PORT}", wait=False)
            job_id = re.search(r"'(raysubmit_\w+)'", log)
            serve: dict = {"models": None}
            deadline = time.time() + 240
            while time.time() < deadline and serve["models"] is None:
                try:
                    req = urllib.request.Request(f"http://127.0.0.1:{SERVE_PORT}/v1/models",
                                                 headers={"Authorization": "Bearer sk-drill"})
                    serve["models"] = [m["id"] for m in json.load(urllib.request.urlopen(req, timeout=5))["data"]]
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(3)
            serve["seconds_to_models"] = round(time.time() - t0, 1)
            if serve["models"] and "tiny-sft" in serve["models"]:
                try:
                    reply = chat("hi")
                    serve["chat_completion_tokens"] = reply["usage"]["completion_tokens"]
                except Exception as exc:  # noqa: BLE001 - recorded, the drill goes on to ray stop
                    serve["chat_error"] = f"{type(exc).__name__}: {exc}"[:300]
            result["steps"]["serve"] = serve
            if job_id:
                sh(RAY, "job", "stop", "--address", DASHBOARD, job_id.group(1), env=env)
    finally:
        sh(RAY, "stop", "--force", env=env)
    result["seconds_total"] = round(time.time() - t_all, 1)
    listing = sh(sys.executable, "-m", "app.cli", "registry", "list", env={**env, "RAYALIGN_HOME": str(home)})
    result["after_ray_stop"] = {
        "datasets": sorted(str(p.relative_to(home)) for p in (home / "datasets").glob("*/v*")),
        "adapter_exists": (adapter / "adapter_config.json").is_file(),
        "published": sorted(str(p.relative_to(home)) for p in (home / "adapters").glob("*/*")) if (home / "adapters").is_dir() else [],
        "registry_db": (home / "registry.db").is_file(),
        "logs": sorted(p.name for p in (home / "logs").glob("*.log")) if (home / "logs").is_dir() else [],
        "registry_list_from_clone": {"command": "RAYALIGN_HOME=~/.rayalign rayalign registry list", "rc": listing.returncode,
                                     "output": listing.stdout.strip().splitlines()[-5:]},
    }
    out = REPO / "benchmarks" / "results" / "job_submit_drill.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0 if all(s.get("rc", 0) == 0 for s in result["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
