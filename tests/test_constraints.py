"""Which samplers steer away from over-budget genomes, given a history of them (no training).

Over-budget trials end PRUNED with their constraint values stored
(``ScalePermutedSpace.sample(trial, constraint=...)``). Optuna's TPE counts
pruned trials among its worse group; NSGA-II and GP learn from complete
trials only, so an over-budget genome never reaches them (README, "Each trial").
"""

import hashlib

import numpy as np
import optuna
import pytest

from nas.samplers import make_sampler
from search_spaces.space import ScalePermutedSpace
from spinenet.cost import CostBudget

TRIALS = 80
SEEDS = (0, 1, 2)
SPACE = ScalePermutedSpace()
# About the median multiply-adds of a random genome at 128 px, 0.25 widths: half of random draws break it.
BUDGET = CostBudget(max_multiply_adds=110e6, input_size=128, filter_size_scale=0.25)


def score(genome) -> float:
    """A score with nothing to do with cost, so only the infeasible history can steer a sampler off the budget."""
    return int(hashlib.sha1(genome.fingerprint.encode()).hexdigest()[:8], 16) / 2 ** 32


def infeasible_share(name: str, seed: int, hide_constraint: bool = False) -> tuple[float, list]:
    """The share of ``TRIALS`` proposals over ``BUDGET``, and the proposals, from the sampler spinenas builds."""
    def objective(trial):
        if hide_constraint:  # pruned alike, but no constraint values stored
            genome = SPACE.sample(trial)
            if any(v > 0 for v in BUDGET(genome)):
                raise optuna.TrialPruned()
        else:
            genome = SPACE.sample(trial, constraint=BUDGET)
        return score(genome)

    study = optuna.create_study(direction="maximize", sampler=make_sampler(name, {}, space=SPACE, seed=seed))
    study.optimize(objective, n_trials=TRIALS)
    pruned = [t.state == optuna.trial.TrialState.PRUNED for t in study.trials]
    return float(np.mean(pruned)), [t.params for t in study.trials]


@pytest.fixture(autouse=True)
def quiet():
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(verbosity)


def test_tpe_proposes_fewer_over_budget_genomes_than_random():
    random_share = np.mean([infeasible_share("random", seed)[0] for seed in SEEDS])
    tpe_share = np.mean([infeasible_share("tpe", seed)[0] for seed in SEEDS])
    nsga2_share = np.mean([infeasible_share("nsga2", seed)[0] for seed in SEEDS])
    # Measured: random 0.51, TPE 0.28 (per seed 0.11, 0.42, 0.30; TPE is random for its first 10 trials).
    assert 0.4 < random_share < 0.6
    assert tpe_share < random_share - 0.15, (tpe_share, random_share)
    # NSGA-II breeds from complete trials only: its first generation (50 of them) never fills here.
    assert abs(nsga2_share - random_share) < 0.05, (nsga2_share, random_share)


def test_tpe_learns_from_the_pruned_state_not_the_constraint_values():
    """While enough trials complete, TPE puts every pruned trial in its worse group, over budget or not."""
    shown = infeasible_share("tpe", 0)
    hidden = infeasible_share("tpe", 0, hide_constraint=True)
    assert shown == hidden  # if this fails, Optuna now weighs constraint values: update the README's sentence
