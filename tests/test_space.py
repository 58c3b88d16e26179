"""ScalePermutedSpace: fixed-range encoding, SpineNet-49 as a point, samplers, variation, budgets."""

import importlib.util
import math
import os
import random
import re
import warnings

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.samplers.evolution import RegularizedEvolutionSampler
from search_spaces.genome import Genome
from search_spaces.space import InfeasibleGenome, ScalePermutedSpace, SpaceError
from search_spaces.space.encoding import lehmer_decode, lehmer_encode
from spinenet import SPINENET_49
from spinenet.cost import CostBudget, network_cost

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = ScalePermutedSpace()


def test_default_space_is_the_papers():
    assert SPACE.num_intermediate == 10 and SPACE.output_levels == (3, 4, 5, 6, 7)
    assert SPACE.level_offsets == (-1, 0, 1, 2) and SPACE.block_fns == ("bottleneck", "residual")
    assert len(SPACE.parameters) == 52
    # 10! orders x 4! output orders x 4^10 shifts x 2^15 fns x parent pairs.
    pairs = [3, 6, 10, 10, 10, 10, 10, 10, 10] + [math.comb(n, 2) for n in range(12, 17)]
    assert SPACE.size() == math.factorial(10) * math.factorial(5) * 4**10 * 2**15 * math.prod(pairs)


def test_spinenet49_is_a_point_of_the_default_space():
    params = SPACE.encode(SPINENET_49)
    assert SPACE.from_params(params) == SPINENET_49
    assert SPACE.contains(SPINENET_49)


def test_enqueued_seed_is_sampled_back():
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(SPACE.encode(SPINENET_49))
    seen = []
    study.optimize(lambda t: seen.append(SPACE.sample(t)) or 0.0, n_trials=2)
    assert seen[0] == SPINENET_49
    assert seen[1] != SPINENET_49


def test_parameter_ranges_never_depend_on_other_choices():
    # Whatever earlier choices were, every trial suggests every parameter over the same range,
    # which is what lets TPE, CMA-ES and GP model the space.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(lambda t: SPACE.sample(t) and 0.0, n_trials=30)
    for trial in study.trials:
        assert {name: (d.low, d.high) for name, d in trial.distributions.items()} == SPACE.parameters
    assert len({tuple(t.params.values()) for t in study.trials}) == 30
    for name, (low, high) in SPACE.parameters.items():
        assert 0 == low < high, name


def test_num_genomes_counts_distinct_level_sequences_exactly():
    small = ScalePermutedSpace(intermediate_levels=[3, 4], level_offsets=[0, 1], block_fns=["residual"],
                               min_level=3, max_level=4)
    genomes = set()
    for values in __import__("itertools").product(*[range(lo, hi + 1) for lo, hi in small.parameters.values()]):
        genomes.add(small.from_params(dict(zip(small.parameters, values))))
    assert small.num_genomes() == len(genomes)
    assert small.size() > small.num_genomes()
    assert SPACE.num_genomes() < SPACE.size()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_level": 5, "max_level": 3}, "min_level <= max_level"),
        ({"intermediate_levels": [2, 9]}, "intermediate level 9 is outside the filter map"),
        ({"level_offsets": [0, 0]}, "level_offsets must be distinct"),
        ({"block_fns": ["bottleneck", "resnet"]}, "unknown block fn 'resnet'"),
        ({"parent_window": 1}, "parent_window must be at least 2"),
        ({"level_bounds": [3, 9]}, "level_bounds must be"),
        ({"bound_mode": "wrap"}, "bound_mode must be"),
        ({"level_bounds": [6, 7], "bound_mode": "restrict", "level_offsets": [0, 1]},
         "no level offset keeps base level 2"),
    ],
)
def test_bad_configuration_raises_at_construction(kwargs, message):
    with pytest.raises(SpaceError, match=message):
        ScalePermutedSpace(**kwargs)


def test_bounds_clamp_or_restrict_shifted_levels():
    clamp = ScalePermutedSpace(level_bounds=(2, 6))
    restrict = ScalePermutedSpace(level_bounds=(2, 6), bound_mode="restrict")
    rng = random.Random(0)
    for space in (clamp, restrict):
        levels = {b.level for _ in range(300) for b in space.random_genome(rng).blocks if not b.is_output}
        assert levels == {2, 3, 4, 5, 6}
    assert not clamp.contains(SPINENET_49)  # SpineNet-49 has an intermediate level-7 block


def test_encode_names_what_is_outside_the_space():
    with pytest.raises(SpaceError, match=r"block 2 reads nodes \[0, 1\], outside its candidates \[1, 2\]"):
        ScalePermutedSpace(parent_window=2).encode(SPINENET_49)
    with pytest.raises(SpaceError, match="uses 'residual'"):
        ScalePermutedSpace(block_fns=["bottleneck"]).encode(SPINENET_49)
    with pytest.raises(SpaceError, match="cannot be made from base levels"):
        ScalePermutedSpace(level_offsets=[0]).encode(SPINENET_49)
    assert not ScalePermutedSpace(level_offsets=[0]).contains(SPINENET_49)


def test_from_params_rejects_out_of_range_values():
    params = SPACE.encode(SPINENET_49)
    params["order_0"] = 10
    with pytest.raises(SpaceError, match=r"order_0 must be an integer in \[0, 9\]"):
        SPACE.from_params(params)


def test_100k_random_samples_are_valid_and_every_hundredth_costed():
    # Costing all 100k took 200 s of the suite; costing every 10th, 90-97 s of this test; every 100th, 23 s.
    # 1k costed genomes cover the plan's block types, resampling paths and levels many times over.
    rng = random.Random(0)
    for index in range(100_000):
        genome = SPACE.from_params(SPACE.random_params(rng))  # Genome() validates
        if index % 100 == 0:
            assert network_cost(genome, 256, filter_size_scale=0.25).params > 0


def test_random_sampler_gives_distinct_genomes():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    prints = []
    study.optimize(lambda t: prints.append(SPACE.sample(t).fingerprint) or 0.0, n_trials=1000)
    assert len(set(prints)) >= 990


def _sampler(name):
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
        "random": lambda: optuna.samplers.RandomSampler(seed=0),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=6),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=0, n_startup_trials=5),
        "gp": lambda: optuna.samplers.GPSampler(seed=0, n_startup_trials=5),
        "evolution": lambda: RegularizedEvolutionSampler(SPACE, population_size=6, tournament_size=3, seed=0),
    }[name]()


@pytest.mark.parametrize("name", ["tpe", "random", "nsga2", "cmaes", "gp", "evolution"])
def test_every_sampler_drives_the_space(name):
    if name == "gp" and importlib.util.find_spec("torch") is None:
        if os.environ.get("CI"):  # the [test] extras install it: a skip there would hide that GP is untested
            pytest.fail("PyTorch is missing in CI: pip install -e '.[test]' installs it")
        pytest.skip("GPSampler needs PyTorch: pip install 'spinenas[gp]'")
    study = optuna.create_study(sampler=_sampler(name))

    def objective(trial):
        genome = SPACE.sample(trial)
        assert SPACE.contains(genome)
        return network_cost(genome, 256, filter_size_scale=0.25).multiply_adds / 1e9

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature warnings
        study.optimize(objective, n_trials=8)  # 5 startup trials, then 3 from each sampler's own model
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 8
    # No sampler fell back to independent sampling because a distribution changed.
    assert all(t.distributions == study.trials[0].distributions for t in study.trials)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_encode_sample_round_trip(seed):
    genome = SPACE.random_genome(random.Random(seed))
    assert SPACE.from_params(SPACE.encode(genome)) == genome


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_mutation_and_crossover_stay_valid_and_inside(seed):
    rng = random.Random(seed)
    a, b = SPACE.random_genome(rng), SPACE.random_genome(rng)
    child = SPACE.mutate(a, rng)
    assert SPACE.contains(child) and child.fingerprint != a.fingerprint
    mixed = SPACE.crossover(a, b, rng)
    assert SPACE.contains(mixed)
    params_a, params_child = SPACE.encode(a), SPACE.encode(child)
    assert sum(params_a[n] != params_child[n] for n in params_a) <= 2 * SPACE.num_intermediate


def test_each_mutation_kind_happens():
    rng = random.Random(3)
    kinds = set()
    for _ in range(300):
        before = SPACE.random_params(rng)
        after = SPACE.mutate_params(before, rng)
        changed = {n.rsplit("_", 1)[0] for n in before if before[n] != after[n]}
        kinds |= {"order" if "order" in changed else None, "output_order" if "output_order" in changed else None}
        kinds |= changed & {"parents", "level_shift", "block_fn"}
    assert {"order", "output_order", "parents", "level_shift", "block_fn"} <= kinds


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(7))))
def test_lehmer_code_round_trip(order):
    assert lehmer_decode(lehmer_encode(order), 7) == list(order)


def test_fingerprint_dedups_reordered_parents():
    specs = [(lvl, fn, (b, a), out) for lvl, fn, (a, b), out in SPINENET_49.to_block_specs()]
    twin = Genome.from_block_specs(specs)
    assert twin != SPINENET_49 and twin.fingerprint == SPINENET_49.fingerprint
    assert SPACE.contains(twin)


def test_cost_budget_prunes_infeasible_genomes():
    budget = CostBudget(max_multiply_adds=4e9, input_size=256, filter_size_scale=1.0)
    assert budget(SPINENET_49)[0] > 0
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.enqueue_trial(SPACE.encode(SPINENET_49))
    madds = []
    study.optimize(lambda t: madds.append(budget.cost(SPACE.sample(t, constraint=budget)).multiply_adds) or 0.0,
                   n_trials=40)
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.PRUNED and first.user_attrs["constraints"][0] > 0
    assert madds and all(m <= 4e9 for m in madds)
    assert any(t.state.name == "PRUNED" for t in study.trials[1:])
    assert all(t.user_attrs["constraints"][0] <= 0 for t in study.trials if t.state.name == "COMPLETE")
    # sample() itself raises it, after recording why, for the genome that breaks the budget.
    study.enqueue_trial(SPACE.encode(SPINENET_49))
    trial = study.ask()
    with pytest.raises(InfeasibleGenome, match=re.escape(SPINENET_49.fingerprint)):
        SPACE.sample(trial, constraint=budget)
    assert trial.user_attrs["infeasible"] is True and trial.user_attrs["constraints"][0] > 0
    assert issubclass(InfeasibleGenome, optuna.TrialPruned)


def test_random_genome_respects_constraint():
    budget = CostBudget(max_params=12e6, filter_size_scale=1.0)
    genome = SPACE.random_genome(random.Random(0), constraint=budget)
    assert network_cost(genome).params <= 12e6
    with pytest.raises(SpaceError, match="no feasible genome"):
        SPACE.random_genome(random.Random(0), constraint=CostBudget(max_params=10), max_tries=20)


def test_evolution_beats_random_on_cost_matching():
    target = network_cost(SPACE.random_genome(random.Random(99)), 256, filter_size_scale=0.25)

    def objective(trial):
        cost = network_cost(SPACE.sample(trial), 256, filter_size_scale=0.25)
        return abs(math.log(cost.params / target.params)) + abs(math.log(cost.multiply_adds / target.multiply_adds))

    for seed in range(3):
        best = {}
        for name, sampler in [("random", optuna.samplers.RandomSampler(seed=seed)),
                              ("evolution", RegularizedEvolutionSampler(SPACE, population_size=30,
                                                                        tournament_size=8, seed=seed))]:
            study = optuna.create_study(sampler=sampler)
            study.optimize(objective, n_trials=250)
            best[name] = study.best_value
        assert best["evolution"] < 0.5 * best["random"], best


def test_evolution_sampler_validates_arguments_and_objectives():
    with pytest.raises(ValueError, match="tournament_size"):
        RegularizedEvolutionSampler(SPACE, population_size=4, tournament_size=5)
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=RegularizedEvolutionSampler(SPACE, population_size=2, tournament_size=1))
    with pytest.raises(ValueError, match="single-objective"):
        study.optimize(lambda t: (0.0, len(SPACE.sample(t).blocks)), n_trials=1, catch=())


def test_evolution_prefers_feasible_parents():
    from nas.samplers.evolution import _fitness

    feasible = optuna.trial.create_trial(value=1.0, user_attrs={"constraints": [-0.1]})
    infeasible = optuna.trial.create_trial(value=9.0, user_attrs={"constraints": [0.5]})
    assert _fitness(feasible, 1.0) > _fitness(infeasible, 1.0)
