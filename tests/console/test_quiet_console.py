"""The quiet console: library/Ray output lands in the log file, rayalign's own lines on the terminal, one per stage."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

from app.console.stages import StageConsole, StageTimes


def test_fd_level_output_goes_to_the_log_and_prints_stay(tmp_path):
    log = tmp_path / "console.log"
    code = textwrap.dedent(f"""
        import logging, os, subprocess, sys
        from app.console.logs import quiet_output
        bound = logging.getLogger("lib"); bound.addHandler(logging.StreamHandler(sys.stdout)); bound.propagate = False
        with quiet_output({str(log)!r}):
            print("result line")                              # the command's own output
            os.write(1, b"raylet banner\\n")                   # C-level / subprocess output
            subprocess.run(["echo", "child process"])
            print("a warning", file=sys.stderr)
            logging.getLogger("ray.data").info("streaming executor banner")
            bound.info("deepspeed-style handler bound to sys.stdout at import")
            exec(compile("print('(raylet) worker line')", "ray_printer", "exec"), {{"__name__": "ray._private.worker"}})
        print("after")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["result line", "after"]
    assert out.stderr == ""
    text = log.read_text()
    for line in ("raylet banner", "child process", "a warning", "streaming executor banner", "bound to sys.stdout",
                 "(raylet) worker line"):
        assert line in text


def test_one_line_per_stage_and_eta_from_the_last_run(tmp_path):
    times = StageTimes(tmp_path / "stage_seconds.json")
    stream = io.StringIO()
    console = StageConsole(stream, "pipeline:t", times)
    for name, status in (("ingest", "ok"), ("sft", "ok"), ("eval", "failed")):
        console.stage_started(name)
        console.stage_finished(name, status, 61.0, "gate perplexity: 3.1 > 2.9\nsecond line" if status == "failed" else "")
    console.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("✔ ingest") and "0:01:01" in lines[0]
    assert lines[2].startswith("✘ eval") and lines[2].endswith("gate perplexity: 3.1 > 2.9")
    again = StageTimes(tmp_path / "stage_seconds.json").seconds
    assert again == {"pipeline:t/ingest": 61.0, "pipeline:t/sft": 61.0}  # a failed stage is no estimate


def test_user_error_in_a_quiet_command_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "app.cli", "train", "--config", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.strip() == f"rayalign train: error: config file not found: {tmp_path / 'missing.yaml'}"


def test_result_lines_reach_the_terminal_after_sys_stdout_is_rebound_to_fd1(tmp_path):
    """Something in a run may rebind ``sys.stdout`` to fd 1, which is the log under the quiet console (the train verb's
    ``output:`` line was lost so under ``ray job submit``): the verb's result lines (``say``) still reach the terminal."""
    code = textwrap.dedent("""
        import argparse, os, sys, types
        from app.commands import say
        from app.console.session import run_quiet

        def run(args):
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # fd 1: the log, under the quiet console
            print("library chatter")
            say(args, "output: /somewhere/adapter")
            return 0

        args = argparse.Namespace(verb="train", _run=run)
        sys.exit(run_quiet(args, types.SimpleNamespace(), "rayalign train", ()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "RAYALIGN_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "output: /somewhere/adapter" and lines[1].startswith("✔ train") and len(lines) == 2
    (log,) = (tmp_path / "logs").glob("train-*.log")
    assert "library chatter" in log.read_text() and "output:" not in log.read_text()
