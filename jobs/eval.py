"""Ray job: run the eval gates on an adapter vs its base, record the decision in the registry, write the report.

    ray job submit --working-dir . -- python -m jobs.eval --config configs/eval/smollm2_gates.yaml adapter=<dir> registry.name=<name>

Exit code 0 when the adapter passed every blocking gate, 1 when a gate blocked it, 2 on a config error.
"""

from __future__ import annotations

import argparse
import sys

from app.config.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.eval", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    from app.commands.eval import run

    try:
        return run(args)
    except ConfigError as exc:
        print(f"jobs.eval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
