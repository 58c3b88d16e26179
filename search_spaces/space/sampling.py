"""Drawing genomes from a space: on an Optuna trial (with an optional constraint), or uniformly at random."""

from __future__ import annotations

import random
from typing import Callable, Sequence

from search_spaces.genome import Genome
from search_spaces.space.encoding import genome_from_params
from search_spaces.space.errors import InfeasibleGenome, SpaceError

# A genome -> floats, feasible when all are <= 0 (e.g. spinenet.cost.CostBudget).
Constraint = Callable[[Genome], Sequence[float]]


def sample_genome(space, trial, constraint: Constraint | None = None) -> Genome:
    """Suggest every parameter of ``space`` on an Optuna trial and return the genome (see ``space.sample``)."""
    params = {name: trial.suggest_int(name, low, high) for name, (low, high) in space.parameters.items()}
    genome = genome_from_params(space, params)
    if constraint is not None:
        values = [float(v) for v in constraint(genome)]
        trial.set_user_attr("constraints", values)
        for i, value in enumerate(values):
            trial.set_constraint(f"constraint{i}", value)
        if any(v > 0 for v in values):
            trial.set_user_attr("infeasible", True)
            raise InfeasibleGenome(f"genome {genome.fingerprint} breaks the constraint: {values}")
    return genome


def random_params(space, rng: random.Random) -> dict[str, int]:
    """A uniformly random parameter assignment of ``space``."""
    return {name: rng.randint(low, high) for name, (low, high) in space.parameters.items()}


def random_genome(space, rng: random.Random, constraint: Constraint | None = None, max_tries: int = 1000) -> Genome:
    """A random genome of ``space`` (feasible under ``constraint`` if one is given)."""
    for _ in range(max_tries):
        genome = genome_from_params(space, random_params(space, rng))
        if constraint is None or all(v <= 0 for v in constraint(genome)):
            return genome
    raise SpaceError(f"no feasible genome found in {max_tries} random samples; loosen the constraint")
