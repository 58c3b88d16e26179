"""The ``spinenas`` command line.

Every user error (a broken genome, an unknown model id, a typo in a config
key, an unreadable file, a bad option value) is printed as one
``spinenas: error: ...`` line with exit status 2, never as a traceback.
TensorFlow's start-up chatter is hidden unless ``--verbose`` is given.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from nas.arguments import UserError
from nas.commands import (confirm, decode, draw, export, fidelity, latency, results, score, search, train, validate,
                          worker)
from nas.commands.common import hide_tensorflow_logs, quiet_python, quiet_tensorflow
from nas.cpu import onednn_settings, use_settings

EXIT_USAGE = 2
COMMANDS = (search, worker, validate, results, confirm, export, latency, decode, train, draw, score, fidelity)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors as one ``spinenas: error:`` line (exit status 2)."""

    def error(self, message: str):
        hint = f" (see '{self.prog} --help')"
        self.exit(EXIT_USAGE, f"spinenas: error: {' '.join(message.split())}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``spinenas`` subcommand."""
    parser = ArgumentParser(prog="spinenas", description="Search, train and decode scale-permuted backbones.")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's log lines and every Python warning (also accepted after the command)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    from nas.experiment import load_train_config
    from nas.tasks import TASKS, task_names

    added = set()
    for name in task_names():  # each task adds its own tools (detection: data, evaluate)
        adder = type(TASKS[name]).add_commands
        if adder not in added:  # a task subclassing another inherits its tools: they are there already
            added.add(adder)
            TASKS[name].add_commands(subparsers, load_train_config=load_train_config)
    _accept_verbose_anywhere(parser)
    return parser


def _accept_verbose_anywhere(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS keeps a subcommand's default from overwriting a --verbose given before the command.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                if "--verbose" not in sub._option_string_actions:
                    sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                                     help="show TensorFlow's log lines and every Python warning")
                _accept_verbose_anywhere(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spinenas`` console script (``argv`` None: the real command line)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    verbose = getattr(args, "verbose", False)
    quiet_tensorflow(verbose)  # before any command imports TensorFlow
    use_settings(onednn_settings())  # likewise: TensorFlow reads it once, at import
    quiet_python(verbose)
    if argv is None:
        from nas.workers import interrupt_on_sigterm

        interrupt_on_sigterm()  # `kill` (and batch schedulers) stop a command as Ctrl-C does
        if not verbose:
            hide_tensorflow_logs()
    try:
        return args.handler(args)
    except (UserError, ValueError, OSError) as err:
        print(f"spinenas: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("spinenas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
