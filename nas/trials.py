"""Reading studies and trials: direction signs, feasible and best trials, metric names, recorded genomes.

The one place the CLI, the report, the samplers and the search ask, so
"better" means the same everywhere. It imports nothing of spinenas but the
genome vocabulary; everything that reads a study can use it.

Examples:
    >>> import optuna
    >>> sign("maximize"), sign(optuna.study.StudyDirection.MINIMIZE)
    (1.0, -1.0)
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from nas.config import ConfigError
from search_spaces.genome import Genome


class TrialFailed(Exception):
    """A trial that could not produce metrics; the reason is stored as its ``fail_reason`` attribute."""


def sign(direction) -> float:
    """+1 for a maximised objective, -1 for a minimised one (a string or an Optuna ``StudyDirection``)."""
    name = direction.name.lower() if hasattr(direction, "name") else str(direction).lower()
    if name not in ("maximize", "minimize"):
        raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
    return 1.0 if name == "maximize" else -1.0


def feasible_trials(study: optuna.Study) -> list:
    """Complete trials within the experiment's constraints."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not t.user_attrs.get("infeasible") and t.values is not None]


def dominates(a, b, signs) -> bool:
    """True when value list ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    pa = [s * v for s, v in zip(signs, a)]
    pb = [s * v for s, v in zip(signs, b)]
    return all(x >= y for x, y in zip(pa, pb)) and any(x > y for x, y in zip(pa, pb))


def ranked_trials(study: optuna.Study) -> list:
    """Feasible complete trials, best first by the first objective (ties: earlier trial first)."""
    first = sign(study.directions[0])
    return sorted(feasible_trials(study), key=lambda t: (-first * t.values[0], t.number))


def best_trials(study: optuna.Study) -> list:
    """The best feasible trial (one objective) or the feasible Pareto front (several), one per genome."""
    feasible = feasible_trials(study)
    if not feasible:
        return []
    if len(study.directions) == 1:
        return ranked_trials(study)[:1]
    signs = [sign(d) for d in study.directions]
    front = [t for t in feasible if not any(dominates(o.values, t.values, signs) for o in feasible if o is not t)]
    unique = {}
    for t in sorted(front, key=lambda t: t.number):
        unique.setdefault(t.user_attrs.get("fingerprint", t.number), t)
    return list(unique.values())


def metric_names(study: optuna.Study) -> list[str]:
    """The objectives' metric names as the study recorded them (``value0``... for foreign studies)."""
    return study.user_attrs.get("metrics") or [f"value{i}" for i in range(len(study.directions))]


def trial_genome(trial) -> Genome:
    """The genome a trial recorded; a ``ConfigError`` names trials from studies spinenas did not make."""
    text = trial.user_attrs.get("genome")
    if text is None:
        raise ConfigError(f"trial {trial.number} has no recorded genome (was this study made by spinenas?)")
    return Genome.from_yaml(text)
