"""Zero-cost proxies, screened and predictor-guided searches, the self-check and the benchmark's logic."""

import json
import math
import random

import numpy as np
import pytest

from nas.cli import main
from nas.config import ConfigError
from nas.experiment import load_experiment, load_train_config
from nas.screening import ENSEMBLE_MEMBERS, PROXIES, kendall, rank_ensemble, score_genomes
from nas.search.driver import run_search
from nas.trials import trial_genome
from search_spaces.features import genome_features
from spinenet import SPINENET_49
from tests.conftest import TINY, random_genome
from tests.test_search import fake_metrics, fake_training, tiny_experiment


def tiny_train_config(tmp_path, task):
    if task == "detection":
        data = f"{{root: {tmp_path}/det64, image_size: 64, generate_shapes: {{train: 16, val: 8, seed: 0}}}}"
        extra = ["task.head.num_filters=16", "task.head.num_convs=1"]
    else:
        data = f"{{root: {tmp_path}/cls64, image_size: 64, generate_shapes: {{train: 20, val: 10, seed: 0}}}}"
        extra = []
    return load_train_config(task=task, overrides=[f"task.data={data}", *extra,
                                                   *(f"model.{k}={v}" for k, v in TINY.items())])


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_every_proxy_is_finite_and_deterministic_for_a_seed(tmp_path, task):
    config = tiny_train_config(tmp_path, task)
    genomes = [random_genome(random.Random(s), num_intermediate=4, min_level=3, max_level=5) for s in (1, 2)]
    names = [*PROXIES, "params", "multiply_adds", "ensemble"]
    first = score_genomes(genomes, config, names, seed=3, batch_size=4)
    again = score_genomes(genomes[:1], config, list(PROXIES), seed=3, batch_size=4)
    for row in first:
        assert set(row) == set(names)
        assert all(math.isfinite(v) for v in row.values()), row
    for name in PROXIES:
        assert again[0][name] == pytest.approx(first[0][name], rel=1e-9, abs=1e-9), name
    assert all(0.0 <= r["ensemble"] <= 1.0 for r in first)


def test_rescaled_float32_synflow_equals_float64_on_the_same_weights(tmp_path, monkeypatch):
    """The float32 score at a scale of 2**-64 is the float64 score of the same network (ReLU, zero biases)."""
    import tf_keras

    from nas.screening import synflow
    from nas.screening.model import is_piecewise_linear
    from nas.tasks import get_task
    from spinenet.decoder import decode

    config = tiny_train_config(tmp_path, "detection")
    genome = random_genome(random.Random(1), num_intermediate=4, min_level=3, max_level=5)
    task = get_task("detection")
    batch = (np.zeros((1, 64, 64, 3), np.float32), None)

    def build():
        tf_keras.utils.set_random_seed(0)
        backbone = decode(genome, input_shape=(64, 64, 3), **config.model.decode_kwargs())
        return task.build_model(backbone, config, 3)

    model = build()
    weights = model.get_weights()
    plain = synflow.score(model, batch, None, 0)
    monkeypatch.setattr(synflow, "SCALE_EXPONENTS", (-64,))
    model.set_weights(weights)
    rescaled = synflow.score(model, batch, None, 0)
    tf_keras.backend.set_floatx("float64")
    try:
        wide = build()
        wide.set_weights([w.astype(np.float64) for w in weights])
        reference = synflow.score(wide, batch, None, 0)
    finally:
        tf_keras.backend.set_floatx("float32")
    assert rescaled == pytest.approx(reference, abs=1e-4)
    assert plain == pytest.approx(reference, abs=1e-4)
    assert is_piecewise_linear(model)


def test_synflow_of_a_swish_network_is_computed_in_float64(tmp_path, monkeypatch):
    """Swish is not linear in the input, so rescaling would be wrong: the runner scores a float64 copy."""
    import tf_keras

    from nas.screening import synflow
    from nas.screening.model import is_piecewise_linear
    from nas.tasks import get_task
    from spinenet.decoder import decode

    config = load_train_config(task="detection", overrides=[
        f"task.data={{root: {tmp_path}/det64, image_size: 64, generate_shapes: {{train: 16, val: 8, seed: 0}}}}",
        "task.head.num_filters=16", "task.head.num_convs=1", "model.activation=swish",
        *(f"model.{k}={v}" for k, v in TINY.items())])
    genome = random_genome(random.Random(1), num_intermediate=4, min_level=3, max_level=5)
    monkeypatch.setattr(synflow, "SCALE_EXPONENTS", (-64,))  # as if its flow overflowed float32
    [row] = score_genomes([genome], config, ["synflow"], seed=0, batch_size=2)
    task = get_task("detection")
    classes = task.prepare_data(config.task).num_classes

    def build():
        tf_keras.utils.set_random_seed(0)
        backbone = decode(genome, input_shape=(64, 64, 3), **config.model.decode_kwargs())
        return task.build_model(backbone, config, classes)

    weights = build().get_weights()  # the runner's float32 draw, scored on a float64 copy
    tf_keras.backend.set_floatx("float64")
    try:
        wide = build()
    finally:
        tf_keras.backend.set_floatx("float32")
    wide.set_weights([w.astype(np.float64) for w in weights])
    assert not is_piecewise_linear(wide)
    assert row["synflow"] == pytest.approx(synflow.score(wide, (np.zeros((1, 64, 64, 3)), None), None, 0), abs=1e-9)


def test_rank_ensemble_ranks_by_mean_member_rank():
    scores = {"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 3.0, 2.0, 4.0], "c": [4.0, 1.0, 2.0, 3.0]}
    ensemble = rank_ensemble(scores)
    assert ensemble[3] == max(ensemble) and ensemble[0] == min(ensemble)
    assert kendall([1, 2, 3], [3, 2, 1]) == -1.0 and kendall([1, 1, 1], [1, 2, 3]) is None
    assert set(ENSEMBLE_MEMBERS) <= set(PROXIES)


def test_features_of_spinenet49_are_exact():
    f = genome_features(SPINENET_49, params=1.0, multiply_adds=2.0)
    assert [f[f"blocks_l{level}"] for level in range(2, 8)] == [1, 2, 4, 4, 2, 2]
    assert f["residual_share"] == pytest.approx(4 / 15, abs=1e-4)
    assert (f["cross_scale_edges"], f["up_resamplings"], f["down_resamplings"]) == (21, 5, 16)
    assert f["depth"] == 10 and f["params"] == 1.0 and f["multiply_adds"] == 2.0


def test_screened_search_scores_candidates_in_a_child(tmp_path, monkeypatch, warm_training):
    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"n_trials": 1, "check_every": 1,
                                             "screening": {"proxy": "naswot", "candidates": 2, "prescreen": 1,
                                                           "batch_size": 4}})
    experiment = load_experiment(path)
    lines = []
    study = run_search(experiment, log=lines.append)
    assert study.user_attrs["prescreened"] is True
    assert any("pre-screen: scoring 2 random genomes with naswot" in line for line in lines)
    trial = [t for t in study.trials if t.state.name == "COMPLETE"][0]
    assert trial.user_attrs["proxy"] == "naswot" and math.isfinite(trial.user_attrs["proxy_scores"]["naswot"])
    queued = [t for t in study.trials if "prescreen_rank" in t.user_attrs]
    assert len(queued) == 1
    # Scored in the child on the configured minibatch of 4 (naswot's kernel is batch x batch).
    genome = trial_genome(trial)
    [row] = score_genomes([genome], experiment.train_config, ["naswot"], seed=experiment.seed, batch_size=4)
    assert trial.user_attrs["proxy_scores"]["naswot"] == pytest.approx(row["naswot"], abs=1e-6)
    assert study.user_attrs["proxy_check"]["screened_by"] == "naswot"
    assert "screened by naswot (it helps where its tau is positive)" in "\n".join(lines)


def test_the_configured_screening_batch_size_reaches_scoring(tmp_path, monkeypatch):
    import nas.screening
    from nas.search import child
    from nas.search.screen import Screener

    asked = []

    class Process:
        def score(self, genomes, config, names, seed, batch_size=8):
            asked.append(batch_size)
            return [{name: 0.0 for name in names} for _ in genomes]

    experiment = load_experiment(tiny_experiment(tmp_path, search={"screening": {"proxy": "naswot",
                                                                                 "batch_size": 5}}))
    genomes = [random_genome(random.Random(i), num_intermediate=4, min_level=3, max_level=5) for i in range(2)]
    Screener(experiment, Process(), num_classes=3).scores(genomes)
    assert asked == [5]
    # The child's side of the "score" message hands it on to score_genomes.
    monkeypatch.setattr(nas.screening, "score_genomes", lambda *a, batch_size=8, **k: asked.append(batch_size) or [])
    message = ("score", [g.to_dict() for g in genomes], Screener(experiment, Process(), 3).config, ["naswot"], 0, 5)
    assert child._score(*message[1:]) == ("scored", []) and asked == [5, 5]


def test_the_prescreen_counts_only_the_genomes_it_queued(tmp_path):
    import optuna

    from nas.search.screen import Screener, prescreen

    allowed = set()

    def budget(genome):  # the first two genomes seen are within budget, every other is over
        if len(allowed) < 2:
            allowed.add(genome.fingerprint)
        return [0.0 if genome.fingerprint in allowed else 1.0]

    experiment = load_experiment(tiny_experiment(tmp_path, search={"screening": {"proxy": "multiply_adds",
                                                                                 "candidates": 2, "prescreen": 4}}))
    screener = Screener(experiment, None, num_classes=3, budget=budget)
    study = optuna.create_study(direction="maximize")
    lines = []
    queued = prescreen(study, experiment.search_space.build(), screener, 8, 0, log=lines.append)
    assert queued == 2 == len(study.get_trials(states=(optuna.trial.TrialState.WAITING,)))
    assert "pre-screen: only 2 of 8 genomes are within budget and scored" in lines


def test_a_minus_proxy_prefers_low_scores(tmp_path):
    from nas.search.screen import Screener

    class Costs:  # multiply_adds needs no model, so no process is asked for scores
        def score(self, *args):
            raise AssertionError("a cost proxy built a model")

    genomes = [random_genome(random.Random(i), num_intermediate=4, min_level=3, max_level=5) for i in range(6)]
    for proxy, pick in (("multiply_adds", max), ("-multiply_adds", min)):
        experiment = load_experiment(tiny_experiment(tmp_path, name=proxy.strip("-"),
                                                     search={"screening": {"proxy": proxy}}))
        screener = Screener(experiment, Costs(), num_classes=3)
        costs = [row["multiply_adds"] for row in screener.scores(genomes)]
        assert screener.best(genomes) is genomes[costs.index(pick(costs))]
    from nas.search.study import build_strategies  # proxy names are checked where screening is set up

    with pytest.raises(ConfigError, match=r"proxy: unknown proxy '-multiply_add' \(did you mean '-multiply_adds'"):
        build_strategies(load_experiment(tiny_experiment(tmp_path, name="typo",
                                                         search={"screening": {"proxy": "-multiply_add"}})))


def test_the_default_proxy_is_the_reversed_ensemble(tmp_path):
    # The recorded table: every model proxy correlated negatively with trained AP, the ensemble most.
    from nas.search.screen import Screener

    class Scores:  # genome i scores i on every member: the last has the highest ensemble rank
        def score(self, genomes, config, names, seed, batch_size=8):
            assert sorted(names) == sorted(ENSEMBLE_MEMBERS)
            return [{name: float(i) for name in names} for i, _ in enumerate(genomes)]

    genomes = [random_genome(random.Random(i), num_intermediate=4, min_level=3, max_level=5) for i in range(5)]
    experiment = load_experiment(tiny_experiment(tmp_path, search={"screening": {"candidates": 5}}))
    assert experiment.search.screening.proxy == "-ensemble"
    assert Screener(experiment, Scores(), num_classes=3).best(genomes) is genomes[0]


def test_screening_absent_keeps_the_fingerprint(tmp_path):
    plain = load_experiment(tiny_experiment(tmp_path))
    screened = load_experiment(tiny_experiment(tmp_path, name="s", search={"screening": {"proxy": "synflow"}}))
    assert plain.to_data()["search"]["screening"] is None
    assert plain.matches(plain.fingerprint, plain.to_data())
    assert screened.fingerprint != load_experiment(tiny_experiment(tmp_path, name="s")).fingerprint
    budget = load_experiment(tiny_experiment(tmp_path, name="s", search={"check_every": 3}))
    assert budget.fingerprint == load_experiment(tiny_experiment(tmp_path, name="s")).fingerprint


def test_predictor_search_runs_and_results_show_the_check(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def train(genome, config, out_dir, report=None):  # deeper is better: something the surrogate can learn
        return fake_metrics(genome_features(genome)["depth"] / 10)

    fake_training(monkeypatch, train)
    path = tiny_experiment(tmp_path, search={"n_trials": 7, "check_every": 1,
                                             "sampler": {"name": "predictor",
                                                         "options": {"n_startup_trials": 2, "n_candidates": 8}}})
    study = run_search(load_experiment(path), log=lambda line: None)
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 7
    check = study.user_attrs["proxy_check"]
    assert check["trials"] == 7 and {"params", "multiply_adds", "predictor"} <= set(check["kendall"])
    assert len(check["history"]) == 7
    assert main(["results", path]) == 0
    out = capsys.readouterr().out
    assert "proxy check over 7 trials (1 seed, 6 sampled) (Kendall tau with AP): params" in out, out
    assert main(["results", path, "--json", "--with-check"]) == 0
    assert json.loads(capsys.readouterr().out)["proxy_check"]["trials"] == 7


def test_a_three_trial_predictor_search_trains_for_real(tmp_path, monkeypatch, warm_training):
    # The seed genome and a random trial, then the surrogate, fitted on their trained AP, picks the third.
    from nas.samplers import predictor

    monkeypatch.chdir(tmp_path)
    fits = []
    fit = predictor.Surrogate.fit

    def counted_fit(self, X, y):
        fits.append(len(y))
        return fit(self, X, y)

    monkeypatch.setattr(predictor.Surrogate, "fit", counted_fit)
    path = tiny_experiment(tmp_path, search={"n_trials": 3, "sampler": {
        "name": "predictor", "options": {"n_startup_trials": 2, "n_candidates": 4}}})
    study = run_search(load_experiment(path), log=lambda line: None)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3 and all(0.0 <= t.value <= 1.0 for t in complete)
    assert fits == [2]
    assert len({t.user_attrs["fingerprint"] for t in complete}) == 3


def test_score_command_prints_json(tmp_path, capsys):
    genome = tmp_path / "g.yaml"
    random_genome(random.Random(4), num_intermediate=4, min_level=3, max_level=5).save(genome)
    code = main(["score", "--genome", str(genome), "--proxy", "naswot", "--proxy", "multiply_adds", "--json",
                 "--batch-size", "4", "--set", f"task.data.root={tmp_path}/det", "--set", "task.data.image_size=64",
                 "--set", "task.data.generate_shapes={train: 8, val: 4, seed: 0}", "--set", "model.endpoints_num_filters=16"])
    assert code == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert set(row["scores"]) == {"naswot", "multiply_adds"} and math.isfinite(row["scores"]["naswot"])


def test_benchmark_on_a_synthetic_table(tmp_path):
    from nas.fidelity.proxies import format_report, judge
    from nas.fidelity import load_genomes
    from search_spaces.space import ScalePermutedSpace

    space = ScalePermutedSpace(min_level=3, max_level=5, intermediate_levels=[2, 3, 4], level_offsets=[0, 1],
                               parent_window=3)
    rng = random.Random(0)
    genomes = {g.fingerprint: g for g in (space.random_genome(rng) for _ in range(60))}
    genomes = list(genomes.values())[:40]
    path = tmp_path / "records.jsonl"
    with open(path, "w") as handle:
        for g in genomes:
            f = genome_features(g)
            for fidelity, noise in (("short", 0.3), ("long", 0.1)):
                for seed in (0, 1):
                    ap = f["depth"] + noise * rng.gauss(0, 1)
                    handle.write(json.dumps({"item": f"{g.fingerprint}/{fidelity}@x/{seed}", "state": "COMPLETE",
                                             "genome": g.to_yaml(), "fingerprint": g.fingerprint, "fidelity": fidelity,
                                             "seed": seed, "metrics": {"AP": ap}, "params": f["cross_scale_edges"],
                                             "multiply_adds": rng.random()}) + "\n")
    entries = load_genomes(str(path), "AP")
    assert len(entries) == 40 and entries[0].seeds == {"short": 2, "long": 2}
    oracle = [e.objective["long"] for e in entries]
    report = judge(entries, {"oracle": oracle}, "short", "long",
                   features=[[genome_features(e.genome)["depth"]] for e in entries], repetitions=20, refit_every=8,
                   screened=("oracle", "-params", "-ensemble"))
    assert report["correlations"]["oracle"]["short"]["kendall"] > 0.5
    assert report["correlations"]["AP@short"]["long"]["spearman"] > 0.5
    search = report["search"]
    assert set(search) == {"random", "predictor", "evolution", *(f"proxy:{sign}{name}" for sign in ("", "-")
                                                                 for name in ("params", "multiply_adds", "oracle")),
                           "screened:oracle", "screened:-params"}  # no ensemble in this table: not screened by it
    assert search["proxy:oracle"]["to_top5"]["mean"] < search["random"]["to_top5"]["mean"]
    assert search["proxy:-oracle"]["to_top5"]["mean"] > search["random"]["to_top5"]["mean"]  # the wrong way round
    assert search["screened:oracle"]["to_top5"]["mean"] < search["random"]["to_top5"]["mean"]
    assert all(1 <= row[k]["mean"] <= 40 for row in search.values() for k in ("to_best", "to_top5"))
    assert "to top 5%" in format_report(report)
    with pytest.raises(ValueError, match="screened: no proxy '-oracel'"):
        judge(entries, {"oracle": oracle}, "short", repetitions=1, screened=("-oracel",))


def test_a_screened_order_trains_the_best_of_each_draw():
    from nas.fidelity.pool import order_screened

    scores = [0.3, None, 0.9, 0.1, 0.5]
    rng = np.random.default_rng(0)
    assert order_screened(scores, rng, candidates=5) == [2, 4, 0, 3, 1]  # the whole pool drawn: score order
    orders = [order_screened(scores, rng, candidates=2) for _ in range(2000)]
    assert all(sorted(order) == [0, 1, 2, 3, 4] for order in orders)
    assert all(order[0] != 1 for order in orders)  # a missing score never beats the one drawn beside it
    first = [order[0] for order in orders]
    assert first.count(2) > first.count(4) > first.count(0) > 0 and 3 in first  # 3 wins only when drawn with 1
    with pytest.raises(ValueError, match="candidates must be at least 1"):
        order_screened(scores, rng, candidates=0)


def test_report_shows_feature_importances_and_proxy_check(tmp_path, monkeypatch):
    from visualize.report import write_report

    monkeypatch.chdir(tmp_path)
    fake_training(monkeypatch, lambda genome, *a, **k: fake_metrics(genome_features(genome)["depth"] / 10))
    path = tiny_experiment(tmp_path, search={"n_trials": 22})
    study = run_search(load_experiment(path), log=lambda line: None)
    page = open(write_report(study, str(tmp_path / "report"))).read()
    assert "Architecture feature importances" in page and "Partial dependence" in page
    assert "Proxies against the trained objective" in page and "multiply_adds" in page
    assert (tmp_path / "report" / "importances.png").exists() and "Parameter importances" not in page


def test_the_proxy_check_says_which_trials_it_rests_on_and_how_they_were_chosen():
    import optuna

    from nas.search.proxy_check import check_study, format_check

    study = optuna.create_study(direction="maximize")
    study.set_user_attr("metrics", ["AP"])
    # AP rises with naswot on the 6 trials the proxy did not pick, and falls with it on the 4 it picked.
    rows = [("seed_genome", 0.50, 5.0), (None, 0.10, 1.0), (None, 0.20, 2.0), (None, 0.30, 3.0), (None, 0.40, 4.0),
            (None, 0.60, 6.0), ("prescreen_rank", 0.9, 7.0), ("prescreen_rank", 0.8, 8.0),
            ("screened_from", 0.7, 9.0), ("screened_from", 0.65, 10.0)]
    rng = random.Random(0)
    for mark, ap, score in rows:
        attrs = {"params": 1.0, "multiply_adds": 1.0, "proxy_scores": {"naswot": score}, "proxy": "naswot",
                 "genome": random_genome(rng).to_yaml()}
        if mark:
            attrs[mark] = 0
        study.add_trial(optuna.trial.create_trial(value=ap, user_attrs=attrs))
    check = check_study(study)
    assert check["provenance"] == {"seed": 1, "pre-screened": 2, "screened": 2, "sampled": 5}
    assert check["kendall_unpicked"]["naswot"] == pytest.approx(1.0)  # the 6 it did not pick: perfectly ordered
    assert check["kendall"]["naswot"] < check["kendall_unpicked"]["naswot"]
    line = format_check(check)
    assert "over 10 trials (1 seed, 2 pre-screened, 2 screened, 5 sampled)" in line
    assert "over the 6 the proxy did not pick: params -, multiply_adds -, naswot +1.00" in line
    from visualize.report import _proxy_check_html

    page = _proxy_check_html(study)  # the report says the same
    assert "The trials: 1 seed, 2 pre-screened, 2 screened, 5 sampled" in page
    assert "<th>tau, trials the proxy did not pick</th>" in page and "<td>+1.000</td></tr>" in page
    unscreened = optuna.create_study(direction="maximize")  # nothing picked by a proxy: no caveat about it
    unscreened.set_user_attr("metrics", ["AP"])
    for ap in (0.1, 0.2, 0.3):
        unscreened.add_trial(optuna.trial.create_trial(value=ap, user_attrs={
            "params": ap, "multiply_adds": ap, "genome": random_genome(rng).to_yaml()}))
    page = _proxy_check_html(unscreened)
    assert "The trials: 3 sampled" not in page and "range-restricted" not in page and "params" in page
    # Too few unpicked trials: no second set of taus.
    del rows[1:3]
    small = optuna.create_study(direction="maximize")
    small.set_user_attr("metrics", ["AP"])
    for mark, ap, score in rows:
        small.add_trial(optuna.trial.create_trial(value=ap, user_attrs={
            "proxy_scores": {"naswot": score}, "genome": random_genome(rng).to_yaml(), **({mark: 0} if mark else {})}))
    assert "kendall_unpicked" not in check_study(small)


def test_a_screening_evolution_marks_the_trials_its_proxy_picked(tmp_path, monkeypatch):
    from nas.search.proxy_check import origin

    monkeypatch.chdir(tmp_path)
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(0.3))
    path = tiny_experiment(tmp_path, search={
        "n_trials": 5, "screening": {"proxy": "multiply_adds", "candidates": 3},
        "sampler": {"name": "evolution", "options": {"population_size": 2, "tournament_size": 2}}})
    study = run_search(load_experiment(path), log=lambda line: None)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    origins = [origin(t) for t in complete]
    # The seed and one random genome fill the population; every child after it is the proxy's pick of 3 mutants.
    assert origins[0] == "seed" and origins.count("screened") >= 2, origins
    assert all(t.user_attrs["screened_from"] == 3 for t in complete if origin(t) == "screened")
