"""`rayalign <verb>`: one entry point for every stage.

Each verb lives in ``app/commands/<module>.py`` exposing ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Only verbs whose module exists are listed, so ``rayalign --help`` never advertises something that does not work.
Known errors (bad config, missing model, bad input) print one line and exit 2: no traceback spam.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

# verb -> module under app.commands (order = order in --help)
VERBS: dict[str, str] = {
    "pipeline": "pipeline",
    "ingest": "ingest",
    "dedup": "dedup",
    "train": "train",
    "export": "export",
    "reward": "reward",
    "dpo": "dpo",
    "tune": "tune",
    "ppo": "ppo",
    "eval": "eval",
    "registry": "registry",
    "outputs": "outputs",
    "serve": "serve",
    "jobs": "jobs",
    "plan": "plan",
    "model": "model",
    "config": "config",
    "mlflow-ui": "mlflow_ui",
}


def available_verbs() -> dict[str, str]:
    """The verbs whose command module exists in this checkout."""
    return {verb: mod for verb, mod in VERBS.items() if importlib.util.find_spec(f"app.commands.{mod}") is not None}


def build_parser(only: str | None = None, prog: str = "rayalign") -> argparse.ArgumentParser:
    """The argparse tree; with ``only``, import just that verb's module (keeps `rayalign <verb>` start-up fast)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Ray-native alignment platform: data -> SFT/DPO/PPO -> eval gates -> registry -> Serve.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show Ray's and the libraries' output and debug logging here (default: a log file)")
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard for local runs")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for verb, mod in available_verbs().items():
        if only is not None and verb != only:
            continue
        module = importlib.import_module(f"app.commands.{mod}")
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's to fix: shown as one line, never a traceback."""
    from app.config.errors import ConfigError
    from app.models.loader import ModelLoadError

    errors: list[type[BaseException]] = [ConfigError, ModelLoadError, FileNotFoundError]
    try:  # the data package defines its own; absent in a partial install
        from app.data.errors import DataError

        errors.append(DataError)
    except ImportError:
        pass
    return tuple(errors)


# Long-running verbs: quiet console (stage line + bar + ETA, Ray and library output in a log file) unless -v.
QUIET_VERBS = {"pipeline", "ingest", "dedup", "train", "reward", "dpo", "tune", "ppo", "eval"}


def main(argv: list[str] | None = None, job: str | None = None) -> int:
    """``rayalign [-v] <verb> …``; ``job`` (e.g. ``jobs.sft``) names a Ray job entrypoint running the same verb."""
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=first if first in available_verbs() else None)
    if job is not None:  # `python -m jobs.sft -h` should read as itself, not as `rayalign train`
        parser.prog = f"python -m {job}"
        for action in parser._subparsers._group_actions if parser._subparsers else []:
            for sub in action.choices.values():
                sub.prog = f"python -m {job}"
    args = parser.parse_args(argv)
    if args.no_dashboard:
        os.environ["RAYALIGN_DASHBOARD"] = "0"
    if args.verb is None:
        parser.print_help()
        return 0
    label = job or f"rayalign {args.verb}"
    if args.verb in QUIET_VERBS and not args.verbose:
        from app.console.session import run_quiet

        return run_quiet(args, importlib.import_module(f"app.commands.{VERBS[args.verb]}"), label, user_errors())
    from app.console.logs import configure_logging

    configure_logging(verbose=args.verbose)
    try:
        return int(args._run(args) or 0)
    except user_errors() as exc:
        if args.verbose or os.environ.get("RAYALIGN_TRACEBACK"):
            raise
        print(f"{label}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
