"""One module per CLI verb: HELP, add_arguments(parser), run(args) -> exit code."""

from __future__ import annotations

import argparse


def say(args: argparse.Namespace, text: str) -> None:
    """A verb's result line(s) for the user (``output: <adapter>``, the decision, the report path).

    Under the quiet console (``args.console_sink``) they go through the console's own terminal stream, not
    ``sys.stdout``: something in a run may rebind ``sys.stdout`` to file descriptor 1, which is the log then
    (under ``ray job submit`` the train verb's ``output:`` line landed only in the log). Otherwise a plain print.
    """
    sink = getattr(args, "console_sink", None)
    if sink is not None:
        sink.text(text)
    else:
        print(text)
