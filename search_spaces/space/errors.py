"""What a search space raises: a space or genome that does not fit, and a sampled genome that breaks the budget."""

from __future__ import annotations

import optuna


class SpaceError(ValueError):
    """A search-space configuration that cannot work, or a genome outside the space."""


class InfeasibleGenome(optuna.TrialPruned):
    """Raised by :meth:`~search_spaces.space.ScalePermutedSpace.sample` when a genome breaks the constraint.

    Optuna records it as a pruned trial, so no model is built.
    """
