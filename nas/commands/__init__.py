"""One module per ``spinenas`` subcommand, each with ``add_parser(subparsers)`` and ``run(args)``."""
