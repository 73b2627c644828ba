"""Every command in README.md and docs/*.md is checked: a command in the docs that does not work fails CI.

Each line of a ```bash block is one command (a trailing ``\\`` continues it, ``#`` starts a comment). What happens:

- ``rayalign X …``, ``python -m jobs.X …`` and ``ray job submit … -- python -m jobs.X …``: the verb's real argument
  parser accepts the flags, the ``--config`` file exists and loads with its schema and every ``key=value`` override
  (overrides holding a placeholder such as ``<dir>`` or ``…`` are left out). Cheap verbs (``config``, ``plan``,
  ``--help``) are run for real; the rest start Ray and train, so they are exercised by their own tests and the
  pipeline run, and here only parsed (RUN_FOR_REAL lists the ones run).
- ``python benchmarks/X.py …``: the script exists and knows every flag used.
- ``pytest … tests/…``: the test files exist.
- anything else (``ray start``, ``curl``, ``sky``, ``kubectl``, ``serve``, ``export``…): every repository path it
  names exists. ``bash .ci/env …`` is checked as the command it wraps.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from app.cli import VERBS, build_parser, main
from app.config.errors import ConfigError
from app.config.loader import load_config
from app.config.registry import schema_for

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
JOB_VERBS = {"sft": "train"}  # jobs/<name>.py -> rayalign verb, where they differ
PLACEHOLDER = re.compile(r"<[^>]*>|…|\.\.\.|\$\w+|\$\{")
PATH = re.compile(r"(?<![\w/.])((?:configs|sky|raycluster|benchmarks|tests|jobs|app|docs)/[\w./*-]+\w)")
RUN_FOR_REAL = {"config", "plan"}


def doc_commands() -> list[tuple[str, str]]:
    """(where, command) for every command line in a bash block of the docs."""
    found = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        in_block, pending = False, ""
        for number, line in enumerate(lines, 1):
            if line.strip().startswith("```"):
                in_block = line.strip() in ("```bash", "```sh") if not in_block else False
                continue
            if not in_block:
                continue
            text = pending + line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            if text.strip():
                found.append((f"{doc.relative_to(ROOT)}:{number}", text.strip()))
    return found


def words(command: str) -> list[str]:
    argv = shlex.split(command)
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):  # VAR=value prefixes
        argv.pop(0)
    if argv[:2] == ["bash", ".ci/env"]:
        argv = argv[2:]
    return argv


def check_verb(verb: str, argv: list[str]) -> str:
    """Parse with the verb's real parser, load its --config with the concrete overrides; run the cheap ones."""
    if verb not in VERBS:
        raise AssertionError(f"unknown verb {verb!r}")
    parser = build_parser(only=verb)
    args = parser.parse_args([verb, *argv])
    config = getattr(args, "config", None) or (args.file if verb == "config" else None)
    if config and not PLACEHOLDER.search(config):
        path = ROOT / config
        assert path.is_file(), f"config {config} does not exist"
        overrides = [o for o in getattr(args, "overrides", []) if "=" in o and not PLACEHOLDER.search(o)]
        try:
            load_config(path, schema_for(path, ROOT / "configs"), overrides)
        except ConfigError as exc:
            raise AssertionError(str(exc)) from None
    if verb in RUN_FOR_REAL and not any(PLACEHOLDER.search(a) for a in argv) and "--out" not in argv:
        assert main([verb, *argv]) == 0
        return "ran"
    return "parsed"


def check(command: str) -> str:
    argv = words(command)
    if "--" in argv and argv[:3] == ["ray", "job", "submit"]:
        argv = argv[argv.index("--") + 1:]
    if argv[:3] == ["python", "-m", "app.cli"]:
        argv = ["rayalign", *argv[3:]]
    if argv[:1] == ["rayalign"]:
        rest = [a for a in argv[1:] if a not in ("-v", "--verbose", "--no-dashboard")]
        if rest in ([], ["--help"], ["-h"]):
            assert main([]) == 0  # prints the help, as --help does
            return "help"
        return check_verb(rest[0], rest[1:])
    if argv[:2] == ["python", "-m"] and argv[2].startswith("jobs."):
        name = argv[2].split(".", 1)[1]
        assert (ROOT / "jobs" / f"{name}.py").is_file(), f"no jobs/{name}.py"
        return check_verb(JOB_VERBS.get(name, name), argv[3:])
    if argv[:1] == ["python"] and argv[1].startswith("benchmarks/"):
        script = ROOT / argv[1]
        assert script.is_file(), f"{argv[1]} does not exist"
        source = script.read_text(encoding="utf-8")
        for flag in (a.split("=", 1)[0] for a in argv[2:] if a.startswith("--")):
            assert f'"{flag}"' in source, f"{argv[1]} has no flag {flag}"
        return "script"
    if "pytest" in argv[:3]:
        for target in (a.split("::")[0] for a in argv if a.startswith("tests")):
            assert (ROOT / target).exists(), f"{target} does not exist"
        return "tests"
    for path in PATH.findall(command):
        if "*" not in path and not PLACEHOLDER.search(path):
            assert (ROOT / path).exists(), f"{path} does not exist"
    return "paths"


COMMANDS = doc_commands()


def test_docs_have_commands():
    assert len(COMMANDS) > 40 and any("rayalign pipeline" in c for _, c in COMMANDS)


@pytest.mark.parametrize("where,command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command(where, command, capsys):
    for part in re.split(r"\s+(?:&&|\|\||;)\s+", command):  # `a && b` is two commands
        check(part)


def test_a_broken_doc_command_fails():
    with pytest.raises((AssertionError, SystemExit)):
        check("rayalign train --config configs/tiny/sft_lora.yaml no_such_key=1")
    with pytest.raises((AssertionError, SystemExit)):
        check("rayalign ingest --config configs/tiny/missing.yaml")
    with pytest.raises((AssertionError, SystemExit)):
        check("python -m jobs.dpo --config configs/tiny/dpo_sigmoid.yaml --no-such-flag")
    with pytest.raises(AssertionError):
        check("python benchmarks/packing.py --no-such-flag")
