"""A real single-node Ray cluster *with a dashboard* (JobSubmissionClient needs it), as a test fixture helper.

The session-wide ``ray_local`` fixture runs without a dashboard, so job-API tests start their own head node with
``ray start --head`` on free ports in a private temp dir, and stop it by killing exactly the processes whose command
line names that temp dir (never ``ray stop``, which would take down every Ray cluster on the machine). Not
``--block``: under load the optional ray-client server can time out, and --block then kills the whole head.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.jobs_api.conftest import free_port


class RayHead:
    def __init__(self, num_cpus: int = 2):
        self.temp = tempfile.mkdtemp(prefix="ra-jobs-", dir="/tmp")
        self.gcs_port, self.dash_port = free_port(), free_port()
        self.dashboard = f"http://127.0.0.1:{self.dash_port}"
        ray_bin = str(Path(sys.executable).with_name("ray"))
        self.cmd = [ray_bin, "start", "--head", f"--num-cpus={num_cpus}", f"--port={self.gcs_port}",
                    "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dash_port}",
                    f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                    f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
                    f"--runtime-env-agent-port={free_port()}", f"--temp-dir={self.temp}", "--disable-usage-stats"]
        # every fixed default port (agent 52365, metrics, runtime-env agent) would collide with other clusters here
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "RayHead":
        env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_raylet_start_wait_time_s="120")
        self.log = open(Path(self.temp) / "head.log", "w")
        for attempt in range(3):  # Ray gives the raylet a fixed 30 s to register: a loaded machine can miss it
            self.proc = subprocess.Popen(self.cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            if self.proc.wait(300) == 0:
                break
            self._kill_all()
        else:
            tail = (Path(self.temp) / "head.log").read_text()[-3000:]
            self.__exit__()
            raise RuntimeError(f"`ray start --head` failed 3 times:\n{tail}")
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{self.dashboard}/api/version", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                self.__exit__()
                raise RuntimeError(f"ray head did not start: {(Path(self.temp) / 'head.log').read_text()[-2000:]}")
            time.sleep(0.5)
        return self

    def submit(self, client, timeout: float = 180, **kwargs) -> str:
        """submit_job, retried while the dashboard's job agent is still starting ('No available agent')."""
        deadline = time.time() + timeout
        while True:
            try:
                return client.submit_job(**kwargs)
            except Exception as exc:  # noqa: BLE001 - agent still starting, or a dropped connection under load
                transient = "No available agent" in str(exc) or "Connection" in type(exc).__name__ + str(exc)
                if not transient or time.time() > deadline:
                    raise
                time.sleep(2)

    def pids(self) -> list[int]:
        """Processes of this head only: every Ray daemon and worker of it names our private temp/session dir."""
        out = subprocess.run(["pgrep", "-f", self.temp], capture_output=True, text=True).stdout.split()
        return [int(p) for p in out if int(p) != os.getpid()]

    def __exit__(self, *exc) -> None:
        self._kill_all()
        self.log.close()
        if not os.environ.get("RAYALIGN_KEEP_RAY_TEMP"):
            shutil.rmtree(self.temp, ignore_errors=True)

    def _kill_all(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(2)
