"""The ``spinenas`` command line.

Every user error (a broken genome, an unknown model id, a typo in a config
key, an unreadable file) is printed as one ``spinenas: error: ...`` line with
exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from nas.commands import data, decode, draw, evaluate, search, train
from nas.commands.common import UserError

EXIT_USAGE = 2
COMMANDS = (search, decode, train, evaluate, data, draw)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``spinenas`` subcommand."""
    parser = argparse.ArgumentParser(prog="spinenas", description="Search, train and decode scale-permuted backbones.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spinenas`` console script."""
    args = build_parser().parse_args(argv)
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
