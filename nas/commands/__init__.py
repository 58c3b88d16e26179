"""One module per ``spinenas`` subcommand, each with ``add_parser(subparsers)`` and its handler.

:mod:`~nas.commands.common` and :mod:`~nas.commands.search_run` hold what several of them share;
:mod:`~nas.commands.export_model_garden` is ``spinenas export --model-garden``.
"""
