"""Writes to trials that Optuna's public API does not offer, in one place.

Optuna lets a process change a trial through its own ``optuna.Trial`` or
``Study.tell``; spinenas also needs to claim one particular waiting trial
(one worker wins each), to fail another process's dead trial with its
reason and to finish a cut-off trial with the values it recorded, each
atomically in the storage. Those need the storage's
``set_trial_state_values`` and ``set_trial_user_attr`` and a trial's id,
which are private. They are used here only, and
``tests/test_trial_writes.py`` fails loudly when Optuna changes them.
"""

from __future__ import annotations

from typing import Optional

import optuna
from optuna.trial import FrozenTrial, TrialState


def claim_waiting(study: optuna.Study, trial: FrozenTrial) -> Optional[optuna.Trial]:
    """Move the WAITING ``trial`` to RUNNING for this process; None when another process took it first."""
    try:
        if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
            return optuna.Trial(study, trial._trial_id)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
    return None


def fail_trial(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Mark another process's RUNNING ``trial`` FAIL with ``fail_reason``; False when it had already finished."""
    try:
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def complete_trial(study: optuna.Study, trial: FrozenTrial, values: list) -> bool:
    """Mark the RUNNING ``trial`` COMPLETE with ``values``; False when it had already finished."""
    try:
        return bool(study._storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, list(values)))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
