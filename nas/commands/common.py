"""What every subcommand shares: the user-error type, quiet TensorFlow start-up, and finding studies and genomes."""

from __future__ import annotations

import os


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ start-up chatter unless the user asked for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def genome_from_arg(entry: str):
    """A genome named on the command line: ``spinenet-49``, ``r50-like`` or a YAML/JSON file."""
    from spinenet.specs import resolve_genome

    return resolve_genome(entry)  # a GenomeError is a ValueError: one line, exit status 2


def add_study_options(parser, *, file_help: str = "the experiment file (or give --storage and --study-name)") -> None:
    """The positional experiment FILE and ``--storage``/``--study-name`` that name an existing study."""
    parser.add_argument("file", nargs="?", help=file_help)
    parser.add_argument("--storage", help="Optuna storage URL, e.g. sqlite:///runs/NAME/study.db "
                                          "(default: the experiment's)")
    parser.add_argument("--study-name", help="study name (default: the experiment's name)")


def study_from_args(args):
    """The existing study named by an experiment FILE, or by --storage and --study-name; never creates one."""
    from nas.search import load_study

    if args.file:
        from nas.experiment import load_experiment

        experiment = load_experiment(args.file, ())
        return load_study(args.storage or experiment.storage_url, args.study_name or experiment.study_name)
    if not (args.storage and args.study_name):
        raise UserError("give an experiment FILE, or both --storage and --study-name")
    return load_study(args.storage, args.study_name)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value
