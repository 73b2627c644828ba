"""benchmarks/train_overhead_alternating.py: the chunk arithmetic against hand-worked values, and a process tree
stopped and continued as one (a real parent and grandchild)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from app.config.paths import REPO_ROOT


@pytest.fixture(scope="module")
def alt():
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the script imports its siblings by name
    import train_overhead_alternating

    return train_overhead_alternating


def test_a_chunk_counts_only_the_steps_that_started_and_ended_inside_it(alt):
    starts, tokens = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [10, 20, 30, 40, 50]
    assert alt.chunk_rate(starts, tokens, 0.5, 4.0) == (90, 3.0, 3)  # steps 1, 2, 3; step 0 began before 0.5
    assert alt.chunk_rate(starts, tokens, 0.0, 3.5) == (60, 3.0, 3)  # step 3 ends at 4.0, after the chunk
    assert alt.chunk_rate(starts, tokens, 5.0, 9.0) == (0, 0, 0)


def test_summary_by_hand(alt):
    # bare: 1-s steps of 100 tokens in [0, 10], of 125 tokens in [20, 30]; Ray: 1-s steps of 90 tokens in [10, 20],
    # then its last step (the final checkpoint), which never counts
    bare = {"starts": [float(t) for t in range(0, 11)] + [float(t) for t in range(20, 31)],
            "tokens": [100] * 10 + [0] + [125] * 10}
    ray = {"starts": [float(t) for t in range(10, 22)], "tokens": [90] * 11 + [5]}
    chunks = [{"side": s, "a": a, "b": a + 10.0, "steal_fraction": 0.0, "busy_cores": 2.0}
              for s, a in (("bare", 0.0), ("ray", 10.0), ("bare", 20.0))]
    out = alt.summarise(bare, ray, chunks, {})
    assert out["chunks"]["tokens_per_s"] == [100.0, 90.0, 125.0]
    assert out["bare_tokens_per_s"] == pytest.approx(112.5)  # (1000 + 1250) / 20
    assert out["overhead"] == pytest.approx(0.2)  # 1 - 90 / 112.5
    assert out["pair_overheads"] == [0.2]  # 1 - 90 / ((100 + 125) / 2)
    assert out["bare_split"]["spread"] == pytest.approx(25 / 112.5)


def test_a_tree_stops_and_continues_as_one(alt):
    import psutil

    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", child])
    try:
        tree = alt.Tree(proc)
        deadline = time.time() + 20
        while len(tree.members()) < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert len(tree.members()) == 2
        tree.signal(signal.SIGSTOP)
        time.sleep(0.2)
        assert {p.status() for p in tree.members()} == {psutil.STATUS_STOPPED}
        tree.signal(signal.SIGCONT)
        time.sleep(0.2)
        assert psutil.STATUS_STOPPED not in {p.status() for p in tree.members()}
    finally:
        for p in tree.members()[::-1]:
            p.kill()
        proc.wait()
