"""What every subcommand shares: the user-error type and quiet TensorFlow start-up."""

from __future__ import annotations

import os


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ start-up chatter unless the user asked for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
