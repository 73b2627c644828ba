"""Send Ray's and the libraries' output to a log file, keep the terminal for rayalign's own lines.

``quiet_output(log_path)`` points file descriptors 1 and 2 at the log (so Ray's raylet/GCS processes, C++ warnings,
progress bars, ``logging`` handlers and library prints all land there) and gives Python's ``sys.stdout`` back to
the terminal through a saved copy of the original descriptor, so a command's own ``print`` still shows. It also
asks the libraries not to draw progress bars or advisories. Ray streams its workers' output to the driver, which
prints it from Ray's own modules: those prints go to the log too (``TerminalStdout``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Set before Ray or the libraries are imported/started; a value the user exported wins.
QUIET_ENV = {
    "RAY_DEDUP_LOGS": "1",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",   # Ray Data's per-operator tqdm bars
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}


def configure_logging(verbose: bool, log_path: Path | None = None) -> None:
    """Root logging: DEBUG to stderr with ``-v``; otherwise INFO into ``log_path`` (or stderr when there is none)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if verbose or log_path is None:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


# Modules whose prints reach the terminal; every other writer of sys.stdout (Ray's worker-log and error printers,
# logging handlers libraries bound to sys.stdout at import, e.g. DeepSpeed's) goes to the log.
TERMINAL_WRITERS = ("app", "jobs", "rich", "__main__")


class TerminalStdout(io.TextIOWrapper):
    """``sys.stdout`` on the terminal for rayalign's own prints; the libraries' prints go to the log."""

    def __init__(self, terminal_fd: int, log_fd: int):
        super().__init__(os.fdopen(terminal_fd, "wb", buffering=0), encoding="utf-8", errors="replace",
                         line_buffering=True, write_through=True)
        self._log_fd = log_fd

    def write(self, text: str) -> int:
        writer = str(sys._getframe(1).f_globals.get("__name__", ""))
        if writer.split(".", 1)[0] not in TERMINAL_WRITERS:
            os.write(self._log_fd, text.encode("utf-8", "replace"))
            return len(text)
        return super().write(text)


def _writes_to_fd(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def quiet_output(log_path: Path) -> Iterator[io.TextIOBase]:
    """Redirect fds 1/2 into ``log_path`` for the duration; yields a text stream on the original terminal."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    terminal = TerminalStdout(os.dup(saved_out), log_fd)
    old_stdout, old_stderr = sys.stdout, sys.stderr
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        if _writes_to_fd(old_stdout, 1):  # our own prints (results, the summary) stay on the terminal;
            sys.stdout = terminal          # a stream that is not fd 1 (a test's capture) is left alone
        if _writes_to_fd(old_stderr, 2):
            sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb", buffering=0), encoding="utf-8",
                                          errors="replace", line_buffering=True, write_through=True)
        configure_logging(verbose=False, log_path=log_path)
        yield terminal
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        if sys.stderr is not old_stderr:
            with contextlib.suppress(Exception):
                sys.stderr.close()
        sys.stdout, sys.stderr = old_stdout, old_stderr
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err):  # log_fd stays open: handlers bound to the terminal stream may still log
            os.close(fd)
        with contextlib.suppress(Exception):
            terminal.flush()
