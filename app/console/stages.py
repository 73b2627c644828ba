"""Stage lines on the terminal: a progress bar with elapsed time and ETA while a stage runs, one line when it ends.

``StageConsole`` is a ``app.pipeline.progress.ProgressSink``: the pipeline calls ``stage_started`` /
``stage_finished``; a single long command (ingest, train, …) is one stage. The ETA comes from the last run of the
same thing in this rayalign home (``<home>/logs/stage_seconds.json``); without one the bar shows elapsed time only.
On a terminal the bar is live; when the output is a file or pipe only the finished lines are written, so a captured
log stays one line per stage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from app.pipeline.progress import ProgressSink

MARKS = {"ok": "[green]✔[/]", "failed": "[red]✘[/]", "stopped": "[yellow]■[/]", "skipped": "[dim]-[/]"}


class StageTimes:
    """Seconds each stage took last time, keyed by ``<what>/<stage>`` (e.g. ``pipeline:demo/sft``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.seconds: dict[str, float] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.seconds = {}

    def record(self, key: str, seconds: float) -> None:
        self.seconds[key] = round(seconds, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.seconds, indent=1, sort_keys=True), encoding="utf-8")


class EtaColumn(TextColumn):
    """'ETA 0:01:20' from the stage's expected seconds, or nothing when there is no estimate."""

    def __init__(self):
        super().__init__("")

    def render(self, task):
        expected = task.fields.get("expected")
        if not expected or task.finished:
            return ""
        left = max(0.0, expected - (task.elapsed or 0.0))
        return f"ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}" if left else "ETA soon"


class StageConsole(ProgressSink):
    """Draws stages on ``stream``; ``key`` names what runs (``pipeline:demo``, ``ingest``) for the ETA history."""

    def __init__(self, stream: TextIO, key: str, times: StageTimes):
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self.key, self.times = key, times
        self.live = self.console.is_terminal
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(bar_width=24),
                                 TimeElapsedColumn(), EtaColumn(), console=self.console, transient=True,
                                 auto_refresh=self.live, disable=not self.live, redirect_stderr=False,
                                 redirect_stdout=False)  # Ray's printer threads must not reach the bars
        self.tasks: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self._ticker = None

    def line(self, text: str) -> None:
        """A line above the live bars (or plainly, when not on a terminal)."""
        self.console.print(text)

    def text(self, text: str) -> None:
        """Plain text on the terminal (no markup or emoji codes: a model's answer or a config may hold brackets or
        colons), whatever ``sys.stdout`` is now."""
        self.console.print(text, markup=False, emoji=False)

    def stage_started(self, name: str) -> None:
        expected = self.times.seconds.get(f"{self.key}/{name}")
        self.started[name] = time.monotonic()
        if not self.progress.live.is_started and self.live:
            self.progress.start()
        self.tasks[name] = self.progress.add_task(name, total=expected or None, expected=expected)
        if expected and self.live:
            self._tick()

    def _tick(self) -> None:
        """Advance bars with an estimate by wall time (capped below 100% until the stage really ends)."""
        import threading

        if self._ticker is not None:
            return

        def loop():
            while self.progress.live.is_started:
                for name, task_id in list(self.tasks.items()):
                    task = self.progress.tasks[task_id] if task_id < len(self.progress.tasks) else None
                    if task is not None and task.total and not task.finished:
                        self.progress.update(task_id, completed=min(task.total * 0.99, time.monotonic() - self.started[name]))
                time.sleep(0.5)

        self._ticker = threading.Thread(target=loop, name="stage-bars", daemon=True)
        self._ticker.start()

    def stage_finished(self, name: str, status: str, seconds: float, detail: str = "") -> None:
        task_id = self.tasks.pop(name, None)
        if task_id is not None:
            self.progress.remove_task(task_id)
        if status == "ok":
            self.times.record(f"{self.key}/{name}", seconds)
        mark = MARKS.get(status, status)
        bar = "━" * 12 if status == "ok" else " " * 12
        text = f"{mark} {name:<9} [dim]{bar}[/] {_clock(seconds)}"
        if detail:
            text += f"  {escape((detail.strip().splitlines() or [''])[0][:160])}"
        self.line(text)
        if not self.tasks and self.progress.live.is_started:
            self.progress.stop()

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
