"""What ``benchmarks/train_overhead.py`` samples while a loop runs: the machine (/proc/stat: steal, busy cores, load
from other users), the threads of one process (/proc/<pid>/task: name, niceness, time on a CPU and runnable but
waiting), and the CPU of every process the driver started (``psutil``, by kind: raylet, gcs_server, the train worker,
...). Linux only; the numbers land in benchmarks/results/train_overhead.json."""

from __future__ import annotations

import os
import time
from pathlib import Path


def proc_stat() -> dict[str, int]:
    """The machine's CPU jiffies by kind (/proc/stat's ``cpu`` line): steal is time this VM's vCPUs were runnable
    but the hypervisor ran something else."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    with open("/proc/stat") as fh:
        return dict(zip(names, map(int, fh.readline().split()[1:9])))


def thread_table(pid: int | str = "self") -> dict[int, tuple[str, int, int, int]]:
    """{thread id: (name, niceness, ns on a CPU, ns runnable but waiting for a CPU)} of process ``pid``."""
    out = {}
    task = Path(f"/proc/{pid}/task")
    for entry in task.iterdir() if task.is_dir() else ():
        try:
            stat = (entry / "stat").read_text()
            run_ns, wait_ns = map(int, (entry / "schedstat").read_text().split()[:2])
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        out[int(entry.name)] = (stat[stat.find("(") + 1:stat.rfind(")")], int(rest[16]), run_ns, wait_ns)
    return out


def own_cpu_s() -> float:
    """CPU seconds of this process (all its threads, ended ones included)."""
    with open("/proc/self/stat") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def machine_window(stat0: dict, stat1: dict, threads0: dict, threads1: dict, wall: float, own_cores: float) -> dict:
    """Steal and busy cores of the machine; ``foreign_cores``: busy cores minus ``own_cores`` (what this benchmark's
    processes used), i.e. what other users of the shared machine took meanwhile; and the threads of one process
    grouped by (name, niceness): cores on a CPU and runnable-but-waiting over ``wall`` seconds (under 0.002 left out)."""
    d = {k: stat1[k] - stat0[k] for k in stat0}
    total = sum(d.values()) or 1
    busy = (total - d["idle"] - d["iowait"]) / total * (os.cpu_count() or 1)
    groups: dict[str, list[float]] = {}
    for tid, (name, nice, run, wait) in threads1.items():
        _, _, run0, wait0 = threads0.get(tid, (name, nice, 0, 0))
        g = groups.setdefault(f"{name} (nice {nice})", [0, 0.0, 0.0])
        g[0] += 1
        g[1] += (run - run0) / 1e9 / wall
        g[2] += (wait - wait0) / 1e9 / wall
    return {"steal_fraction": round(d["steal"] / total, 4), "busy_cores": round(busy, 3), "foreign_cores": round(busy - own_cores, 3),
            "threads": {k: {"threads": n, "on_cpu_cores": round(r, 3), "waiting_cores": round(w, 3)}
                        for k, (n, r, w) in sorted(groups.items(), key=lambda kv: -kv[1][1]) if r + w >= 0.002}}


class MachineSample:
    """/proc/stat and this process's threads now; ``since()`` gives ``machine_window`` up to the call."""

    def __init__(self):
        self.t, self.stat, self.threads, self.cpu = time.time(), proc_stat(), thread_table(), own_cpu_s()

    def since(self) -> dict:
        wall = time.time() - self.t
        return machine_window(self.stat, proc_stat(), self.threads, thread_table(), wall, (own_cpu_s() - self.cpu) / wall)


def process_kind(proc) -> str:
    """What a process of a local Ray cluster is, from its command line / Ray's process title."""
    cmd = " ".join(proc.cmdline())
    for marker, kind in (("gcs_server", "gcs_server"), ("raylet", "raylet"), ("dashboard/dashboard.py", "dashboard"),
                         ("dashboard/agent.py", "dashboard_agent"), ("runtime_env/agent", "runtime_env_agent"),
                         ("log_monitor.py", "log_monitor"), ("autoscaler/_private/monitor.py", "monitor")):
        if marker in cmd:
            return kind
    if cmd.startswith("ray::"):  # a worker: ray::RayTrainWorker.run..., ray::TrainController..., ray::IDLE
        return cmd.split()[0].split(".")[0]
    return proc.name()


class ProcessCPU:
    """CPU seconds of this process and every process it started (Ray's daemons and workers), sampled every 0.5 s in a
    thread, so a window (the steady-state steps) can be cut out afterwards: ``window(t0, t1)`` gives each kind's CPU
    seconds per wall second (1.0 = one core busy)."""

    def __enter__(self):
        import threading

        self.samples: list[tuple[float, dict[int, tuple[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        kinds: dict[int, str] = {}
        while True:
            snap = {}
            for proc in [me, *me.children(recursive=True)]:
                try:
                    t = proc.cpu_times()
                    kind = "driver" if proc.pid == me.pid else process_kind(proc)
                    if kind.startswith("ray::") or proc.pid not in kinds:  # workers change title (IDLE -> actor)
                        kinds[proc.pid] = kind
                    snap[proc.pid] = (kinds[proc.pid], t.user + t.system)
                except psutil.Error:
                    pass
            workers = [pid for pid, (kind, _) in snap.items() if kind.startswith("ray::RayTrainWorker")]
            self.samples.append((time.time(), snap, proc_stat(), thread_table(workers[0]) if workers else {}))
            if self._stop.wait(1.0):
                return

    def window(self, t0: float, t1: float) -> dict:
        first = max((s for s in self.samples if s[0] <= t0), key=lambda s: s[0], default=self.samples[0])
        last = min((s for s in self.samples if s[0] >= t1), key=lambda s: s[0], default=self.samples[-1])
        wall = last[0] - first[0]
        by_kind: dict[str, float] = {}
        for pid, (kind, cpu) in last[1].items():
            by_kind[kind] = by_kind.get(kind, 0.0) + cpu - first[1].get(pid, (kind, 0.0))[1]
        machine = machine_window(first[2], last[2], first[3], last[3], wall, sum(by_kind.values()) / wall)
        cores = {k: round(v / wall, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v / wall >= 0.0005}
        train = sum(v for k, v in cores.items() if k.startswith("ray::RayTrainWorker"))
        return {"wall_s": round(wall, 1), "cores_by_kind": cores, "cores_not_training": round(sum(cores.values()) - train, 3),
                "machine": machine}
