"""app/train/cpu_priority.py in a child process (a niceness raise is one-way, so never in the test process itself):
the named train thread's OpenMP team keeps its priority, every other thread yields; nothing changes when the team
started before the name was set."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import json, os, sys, threading, time, torch
    from app.train import cpu_priority as cp

    team_first = sys.argv[1] == "team-first"
    torch.set_num_threads(2)
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, name="helper")  # stands for a Ray core-worker thread
    helper.start()
    out = {}

    def train():
        if team_first:
            torch.randn(512, 512) @ torch.randn(512, 512)   # the OpenMP team exists before the name is set
        cp.name_compute_thread()
        torch.randn(512, 512) @ torch.randn(512, 512)        # starts (or reuses) this thread's OpenMP team
        out["changed"] = cp.lower_helper_threads(19, torch.get_num_threads())
        out["threads"] = [(name, os.getpriority(os.PRIO_PROCESS, tid)) for tid, name in cp.thread_names().items()]

    t = threading.Thread(target=train)
    t.start(); t.join(); stop.set(); helper.join()
    print(json.dumps(out))
""")


def run_child(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names and per-thread niceness are Linux's")
def test_train_thread_and_its_openmp_team_keep_priority_helpers_yield():
    out = run_child("team-last")
    train = [nice for name, nice in out["threads"] if name == "rayalign-train"]
    others = [nice for name, nice in out["threads"] if name != "rayalign-train"]
    assert len(train) >= 2, out  # the train thread + the OpenMP worker it started, which inherited its name
    assert set(train) == {0}, out
    assert others and set(others) == {19}, out  # the main thread and the helper thread
    assert len(out["changed"]) == len(others)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names and per-thread niceness are Linux's")
def test_nothing_changes_when_the_openmp_team_started_before_the_name():
    out = run_child("team-first")
    assert out["changed"] == [], out
    assert {nice for _, nice in out["threads"]} == {0}, out


def test_helper_nice_reads_the_environment(monkeypatch):
    from app.train.cpu_priority import helper_nice

    monkeypatch.delenv("RAYALIGN_HELPER_THREAD_NICE", raising=False)
    assert helper_nice() == 19
    monkeypatch.setenv("RAYALIGN_HELPER_THREAD_NICE", "0")
    assert helper_nice() == 0
    monkeypatch.setenv("RAYALIGN_HELPER_THREAD_NICE", "high")
    with pytest.raises(ValueError, match="RAYALIGN_HELPER_THREAD_NICE='high'"):
        helper_nice()
