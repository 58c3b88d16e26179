"""Command-line argument types, subcommand registration, and the user-error type every command raises.

Every command (a task's own included) registers itself with
:func:`add_command` and names its handler there.

A :class:`UserError` is printed as one ``spinenas: error:`` line and ends the
command with exit status 2.

Examples:
    >>> positive_int("3")
    3
"""

from __future__ import annotations

import argparse
import os


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def add_command(subparsers, name: str, handler, help: str, description: str) -> argparse.ArgumentParser:
    """Register subcommand ``name`` (``help``: its line in ``spinenas --help``), run as ``handler(args)``.

    Returns the subcommand's parser, for its options.
    """
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=handler)
    return parser


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def worker_count(text: str):
    """An argparse type: ``auto`` or an integer of at least 1."""
    return "auto" if text == "auto" else _number(text, int, lambda v: v >= 1, "auto or a positive integer")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    return _number(text, int, lambda v: v >= 0, "an integer of 0 or more")


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    return _number(text, float, lambda v: 0 < v < float("inf"), "a positive number")


def _number(text: str, kind, valid, wanted: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def dataset_folder(path: str) -> str:
    """An argparse type: an existing folder (``--data DIR``), its path normalised so ``data/voc/`` is ``data/voc``.

    Which files the folder must hold depends on the task, known only once the
    config is read; the commands check that next.
    """
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"{path}: no such folder; write one from VOC or YOLO data with "
                                         f"spinenas data import voc|yolo SRC --out {path}")
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path}: is a file, not a dataset folder")
    return os.path.normpath(path)


def output_folder(path: str, option: str = "--out") -> str:
    """Create the folder ``path`` (an option's value) or raise a one-line :class:`UserError`."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{option} {path}: is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise UserError(f"{option} {path}: cannot create the folder ({err.strerror})") from None
    return path
