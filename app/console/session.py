"""One quiet command: log file chosen and announced, output redirected, stage line(s) drawn, errors as one line.

The log file is ``<run folder>/console.log`` when the command knows its run folder before it starts (the pipeline:
its report folder), else ``<home>/logs/<verb>-<UTC time>.log``. A known user error prints one line; anything else
prints one line naming the log file, which holds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.markup import escape

from app.config.paths import rayalign_home
from app.console.logs import quiet_output
from app.console.stages import StageConsole, StageTimes
from app.launch.runtime import on_cluster_started

log = logging.getLogger("rayalign")


def default_log_path(verb: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return rayalign_home() / "logs" / f"{verb}-{stamp}.log"


def _ray_is_up() -> bool:
    ray = sys.modules.get("ray")  # a verb that never imported Ray did not start it
    return bool(ray is not None and ray.is_initialized())


def _stop_ray() -> None:
    try:
        sys.modules["ray"].shutdown()
    except Exception:  # noqa: BLE001 - the command's outcome is decided; a failed shutdown is only logged
        log.exception("ray.shutdown failed")


def run_quiet(args: argparse.Namespace, module, label: str, user_errors: tuple[type[BaseException], ...]) -> int:
    """Run ``args._run(args)`` (the verb's ``module``) with the quiet console; returns its exit code
    (2: user error, printed as one line on stderr; 1: failure, one line naming the log)."""
    try:  # a command may pick its own log file (the pipeline: inside its report folder)
        log_path = module.log_file(args) if hasattr(module, "log_file") else default_log_path(args.verb)
    except user_errors as exc:
        print(f"{label}: error: {exc}", file=sys.stderr)
        return 2
    times = StageTimes(rayalign_home() / "logs" / "stage_seconds.json")
    single = not getattr(module, "DRAWS_STAGES", False)
    outcome: tuple[int, str] = (1, "")
    with quiet_output(log_path) as terminal:
        console = StageConsole(terminal, getattr(args, "stage_key", args.verb), times)
        if not single:  # the command validated its config to know its folder: announce the log first
            console.line(f"log: {log_path}  [dim](Ray and library output; -v prints it here)[/]")
        shown: set[str] = set()

        def announce(urls: dict) -> None:
            for name in ("dashboard", "metrics"):
                if urls.get(name) and name not in shown:
                    shown.add(name)
                    console.line(f"ray {name}: {urls[name]}")

        on_cluster_started(announce)
        args.console_sink = console
        if single:
            console.stage_started(args.verb)
        start = time.monotonic()
        ray_was_up = _ray_is_up()
        try:
            rc = int(args._run(args) or 0)
            outcome = (rc, "")
        except user_errors as exc:
            log.error("%s: %s", label, exc)
            outcome = (2, f"{label}: error: {exc}")
        except KeyboardInterrupt:
            outcome = (130, f"{label}: interrupted")
        except Exception as exc:  # noqa: BLE001 - the traceback goes to the log, one line to the terminal
            log.exception("%s failed", label)
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            outcome = (1, f"{label}: failed: {type(exc).__name__}: {first} (full error in {log_path})")
        if single and outcome[0] != 2:
            console.stage_finished(args.verb, "ok" if outcome[0] == 0 else "failed", time.monotonic() - start,
                                   f"log: {log_path}")
        # Ray started by this command stops while fds 1/2 still go to the log: the workers' last lines reach the
        # driver late (under `ray job submit` they followed the result lines into the job's output).
        if not ray_was_up and _ray_is_up():
            _stop_ray()
        console.close()
        if outcome[1] and outcome[0] != 2:
            console.line(f"[red]{escape(outcome[1])}[/]")
    if outcome[0] == 2:
        print(outcome[1], file=sys.stderr)  # a user error: one line on stderr, as without the quiet console
    return outcome[0]
