"""One precision per study: what ``task.training.precision: auto`` resolved to is stored on the study.

``auto`` means bfloat16 on one machine, float16 on a GPU and float32 on a
third, and only the process that trains can tell (the search's parent never
imports TensorFlow), so the experiment's fingerprint holds the word ``auto``.
Each trial records the precision it trained at; the first to finish stores it
on the study, and a worker whose trial resolved ``auto`` otherwise is refused
(that trial fails, so no complete trial of the study trained at another
precision).
"""

from __future__ import annotations

import socket
from typing import Optional

# Trial user attribute: the precision (a Keras policy name) the trial trained at.
PRECISION_ATTR = "precision"
# Study user attribute: what ``auto`` resolved to for the study's first finished trial.
AUTO_PRECISION_ATTR = "auto_precision"


class PrecisionMismatch(ValueError):
    """This machine resolves ``precision: auto`` to another precision than the study's trials trained at."""


def record_precision(study, trial, setting: str, resolved: Optional[str]) -> None:
    """Store ``resolved`` on ``trial`` and, for ``setting`` auto, check it against the study's (Optuna objects).

    Raises :class:`PrecisionMismatch` (one line, also the trial's
    ``fail_reason``) when the study's trials resolved ``auto`` to another
    precision. ``resolved`` None (a task that does not say) records nothing.
    """
    if resolved is None:
        return
    trial.set_user_attr(PRECISION_ATTR, resolved)
    if setting != "auto":
        return  # an explicit precision is the same everywhere, and the fingerprint holds it
    stored = study.user_attrs.get(AUTO_PRECISION_ATTR)
    if stored is None:
        study.set_user_attr(AUTO_PRECISION_ATTR, resolved)
    elif stored != resolved:
        message = (f"task.training.precision: auto means {resolved} on {socket.gethostname()}, but study "
                   f"{study.study_name!r} trains at {stored}: run this worker on a machine where auto means "
                   f"{stored}, or search from this one in another study")
        trial.set_user_attr("fail_reason", message)
        raise PrecisionMismatch(message)
