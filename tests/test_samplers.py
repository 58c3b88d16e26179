"""Genome samplers: what their decisions rest on."""

from __future__ import annotations

import optuna
import pytest

import nas.samplers.predictor as predictor
from nas.samplers import PredictorSampler
from search_spaces.space import ScalePermutedSpace
from spinenet.cost import network_cost


@pytest.mark.parametrize("bound", [False, True])
def test_predictor_costs_trials_and_candidates_with_one_cost_model(monkeypatch, bound):
    # Trials record the search's own costs (backbone plus head at the task's size). Unbound, the sampler
    # costs candidates with its backbone-only default: the trials' features must come from that same model,
    # or the surrogate compares one thing to another.
    space = ScalePermutedSpace()
    seen = []
    real = predictor.design_matrix

    def spy(genomes, costs, *rest):
        seen.append((list(genomes), list(costs)))
        return real(genomes, costs, *rest)

    monkeypatch.setattr(predictor, "design_matrix", spy)

    def proxy_cost(genome):
        cost = network_cost(genome, 128, filter_size_scale=0.25, resample_alpha=0.25)
        return float(cost.params), float(cost.multiply_adds)

    def bound_cost(genome):
        return tuple(3.0 * v for v in proxy_cost(genome))

    sampler = PredictorSampler(space, n_startup_trials=3, n_candidates=4, seed=0)
    if bound:
        sampler.bind(cost=bound_cost)
    expected = bound_cost if bound else proxy_cost

    def objective(trial):
        genome = space.sample(trial)
        trial.set_user_attr("params", 1e12)  # recorded by another cost model: never to be read
        trial.set_user_attr("multiply_adds", 1e15)
        return float(len(genome.blocks))

    optuna.create_study(direction="maximize", sampler=sampler).optimize(objective, n_trials=5)
    assert len(seen) >= 4  # trials' and candidates' matrices of two surrogate trials
    for genomes, costs in seen:
        assert costs == [expected(g) for g in genomes]
