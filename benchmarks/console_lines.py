"""What README command 1 prints, from a fresh clone: console line counts as a terminal shows them (under a
pseudo-terminal) or captured to a file, the same with `-v`, and the demo pipeline's wall and stage times.

    python benchmarks/console_lines.py                    # ~13 min on 2 cores: clone, venvs, two demo runs
    python benchmarks/console_lines.py --captures DIR     # only parse captures made by hand (see below)

The clone goes next to this repo (``<repo>/../rayalign-fc``) so ``../shared`` resolves as in a user's checkout
(elsewhere, set ``$RAYALIGN_SHARED``). Run 1 is the clone's first command (it creates ``.venv`` and ``.venv-cloud``)
under ``script`` (a pseudo-terminal, 120x40), so the live bars draw as a user sees them; its lines are counted after
rendering carriage returns and cursor moves. Run 2 is ``rayalign -v pipeline`` in a new rayalign home (so it trains
again; the converted-model cache is linked), output to a file. Captures (each optional): ``quiet_pty.typescript``,
``verbose.txt``, ``quiet.txt`` (the first command with output to a file, an earlier protocol) and
``quiet_pty_before_fix.typescript`` (the failing re-run that found a bug), each with ``<name>.rc`` holding
``rc=N wall=S`` and optionally ``<name>.note`` (what the run was), ``commit*.txt``, ``load*.txt`` (``uptime``).
The goal (issue 23): under 40 lines on success, plus the log file path.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "console_lines.json"
COMMAND = "bash .ci/env rayalign pipeline --config configs/pipeline/demo.yaml"
VERBOSE = "bash .ci/env rayalign -v pipeline --config configs/pipeline/demo.yaml"
GOAL = 40
_TOKEN = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][0-9A-B]|\x1b[=>]|(\r\n|\n|\r)|([^\x1b\r\n]+)|(\x1b)")


def render(stream: str) -> list[str]:
    """The lines a terminal shows at the end of ``stream``: text, CR, LF, cursor up/down/column, erase line/screen."""
    lines, row, col = [""], 0, 0
    for m in _TOKEN.finditer(stream):
        params, cmd, newline, text = m.group(1), m.group(2), m.group(3), m.group(4)
        if text is not None:
            text = "".join(c for c in text if c >= " " or c == "\t")
            cur = lines[row].ljust(col)
            lines[row] = cur[:col] + text + cur[col + len(text):]
            col += len(text)
        elif newline == "\r":
            col = 0
        elif newline is not None:
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif cmd == "A":
            row = max(0, row - int(params or 1))
        elif cmd == "B":
            row += int(params or 1)
            lines.extend("" for _ in range(row + 1 - len(lines)))
        elif cmd == "G":
            col = int(params or 1) - 1
        elif cmd == "K":
            lines[row] = {"": lines[row][:col], "0": lines[row][:col], "2": ""}.get(params, lines[row])
        elif cmd == "J" and params in ("", "0"):
            lines[row] = lines[row][:col]
            del lines[row + 1:]
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def typescript_body(raw: str) -> str:
    """``script``'s capture without its 'Script started/done' lines."""
    body = raw.split("\n", 1)[1] if raw.startswith("Script started") else raw
    return re.sub(r"\r?\n?Script done on [^\n]*\n?$", "", body)


def read_raw(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        return fh.read()  # newline="": a bare \r (a live bar's redraw) must stay a \r, not become a line


def read_typescript(path: Path) -> str:
    return typescript_body(read_raw(path))


def file_lines(path: Path) -> list[str]:
    """Lines of a captured file as ``wc -l`` counts them (a bar's \r-redraws stay inside their line)."""
    lines = read_raw(path).split("\n")
    return [line.rstrip("\r") for line in (lines[:-1] if lines and not lines[-1] else lines)]


def read_rc(path: Path) -> dict:
    fields = dict(part.split("=", 1) for part in path.read_text().split()) if path.is_file() else {}
    return {k: int(v) for k, v in fields.items()}


def summary(lines: list[str]) -> dict:
    """Pipeline wall time, per-stage status/seconds and the log/report paths from the console's summary lines."""
    out: dict = {"stages": {}}
    for line in lines:
        if m := re.search(r"pipeline (PASSED|FAILED|STOPPED) in ([\d.]+) min", line):  # -v: after a bar's remains
            out["status"], out["pipeline_minutes"] = m.group(1), float(m.group(2))
        elif m := re.match(r"\s+(\w+)\s+(ok|failed|skipped|stopped)\s+([\d.]+)s\b", line):
            out["stages"][m.group(1)] = {"status": m.group(2), "seconds": float(m.group(3))}
        elif m := re.match(r"\s+held-out perplexity: base ([\d.]+) -> adapter ([\d.]+)", line):
            out["heldout_perplexity"] = {"base": float(m.group(1)), "adapter": float(m.group(2))}
        elif m := re.match(r"(log|report): (\S+)", line):
            out[f"{m.group(1)}_path"] = m.group(2)
    return out


def one_run(lines: list[str], rc: dict, note: str) -> dict:
    env_lines = [line for line in lines if line.startswith("[rayalign]")]  # .ci/env's own one-time lines
    return {"note": note, **rc, "lines": len(lines), "lines_from_ci_env": len(env_lines),
            "lines_besides_ci_env": len(lines) - len(env_lines),
            "meets_goal": bool(rc.get("rc") == 0 and len(lines) - len(env_lines) < GOAL), **summary(lines)}


def note(captures: Path, name: str, default: str) -> str:
    path = captures / f"{name}.note"
    return path.read_text().strip() if path.is_file() else default


def parse(captures: Path) -> dict:
    result: dict = {"measured_command": COMMAND, "goal_lines": GOAL}
    if (captures / "quiet_pty.typescript").is_file():
        pty_raw = read_typescript(captures / "quiet_pty.typescript")
        pty = render(pty_raw)
        result["quiet_on_terminal"] = {
            **one_run(pty, read_rc(captures / "quiet_pty.rc"), note(captures, "quiet_pty",
                      "first command of a fresh clone (creates .venv, .venv-cloud) under a pseudo-terminal, 120x40; "
                      "lines as a terminal renders them")),
            "raw_newlines": pty_raw.count("\n"), "raw_carriage_returns": pty_raw.count("\r"), "console": pty}
    if (captures / "quiet.txt").is_file():
        quiet = file_lines(captures / "quiet.txt")
        result["quiet_to_file"] = {**one_run(quiet, read_rc(captures / "quiet.rc"), note(captures, "quiet",
                                   "first command of a fresh clone (creates .venv, .venv-cloud); output to a file")),
                                   "console": quiet}
    if (captures / "quiet_pty_before_fix.typescript").is_file():  # kept: the re-run that found the 'running' bug
        lines = render(read_typescript(captures / "quiet_pty_before_fix.typescript"))
        result["quiet_on_terminal_before_fix"] = {
            **one_run(lines, read_rc(captures / "quiet_pty_before_fix.rc"),
                      "the same re-run before the fix of a finished SFT run returning 'running' (app/train/session.py)"),
            "console": lines}
    if (captures / "verbose.txt").is_file():
        verbose = file_lines(captures / "verbose.txt")
        result["verbose_to_file"] = {
            **one_run(verbose, read_rc(captures / "verbose.rc"),
                      note(captures, "verbose", "rayalign -v pipeline, new home; output to a file")),
            "meets_goal": None, "lines_as_a_terminal_renders_them": len(render(read_raw(captures / "verbose.txt"))),
            "console_head": verbose[:12], "console_tail": verbose[-20:]}
    result["commits"] = {p.stem: p.read_text().strip() for p in sorted(captures.glob("commit*.txt"))}
    result["load_average"] = {p.stem: [line.split("load average:")[-1].strip() for line in p.read_text().splitlines()]
                              for p in sorted(captures.glob("load*.txt"))}  # `uptime` before/after; 2 cores
    return result


def timed(cmd: str, cwd: Path, out: Path) -> None:
    start = time.time()
    with open(out, "wb") as fh:
        rc = subprocess.run(cmd, shell=True, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT).returncode
    out.with_suffix(".rc").write_text(f"rc={rc} wall={round(time.time() - start)}\n")


def measure(captures: Path) -> None:
    clone = REPO.parent / "rayalign-fc"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    (captures / "commit.txt").write_text(subprocess.run(["git", "log", "--oneline", "-1"], cwd=clone, check=True,
                                                        capture_output=True, text=True).stdout)
    timed(f"script -qec 'stty cols 120 rows 40; {COMMAND}' {captures / 'quiet_pty.typescript'} >/dev/null",
          clone, captures / "quiet_pty.txt")
    fresh = clone / ".rayalign-v"  # a new home (model cache linked): in the first one SFT is finished and reused
    fresh.mkdir()
    (fresh / "models").symlink_to(clone / ".rayalign" / "models", target_is_directory=True)
    timed(f"RAYALIGN_HOME={fresh} {VERBOSE}", clone, captures / "verbose.txt")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--captures", type=Path, help="parse these captures instead of running (quiet.txt, ...)")
    args = ap.parse_args()
    captures = args.captures
    if captures is None:
        captures = Path(REPO / ".rayalign" / "console_lines")
        captures.mkdir(parents=True, exist_ok=True)
        measure(captures)
    result = parse(captures)
    RESULT.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)} | {
        k: {f: v[f] for f in ("rc", "wall", "lines", "lines_besides_ci_env", "meets_goal") if f in v}
        for k, v in result.items() if isinstance(v, dict)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
