"""Latency: the kernels a plan runs under LiteRT, the calibration table, the predictor, the command and the search."""

import collections
import json

import numpy as np
import optuna
import pytest

from search_spaces.block_fns import BLOCK_FNS, register_block_fn
from search_spaces.genome import Genome
from spinenet import SPINENET_49, SPINENET_MOBILE_49
from spinenet.cost import network_cost
from spinenet.latency.calibration import (CalibrationMismatch, CalibrationTable, STANDARD_BUILDERS, load_table,
                                          measure_kernels, new_table)
from spinenet.latency.kernels import Kernel, UnplannableLayer, plan_kernels
from spinenet.latency.predictor import LatencyPredictor
from spinenet.plan.network import plan_network
from spinenet.scaling import Scaling

MOBILE = Scaling(1.0, 0.5, 1, 48, family="mobile")


def kernels_of(genome, scaling, size=384, activation="relu"):
    return plan_kernels(plan_network(genome, scaling).layers, size, size, activation)


@pytest.mark.parametrize("genome, scaling, activation, count", [
    (SPINENET_49, Scaling(), "relu", 178), (SPINENET_MOBILE_49, MOBILE, "swish", 331)])
def test_kernels_do_the_cost_models_multiply_adds(genome, scaling, activation, count):
    kernels = kernels_of(genome, scaling, activation=activation)
    assert len(kernels) == count
    counted = sum(k.multiply_adds for k in kernels if k.op in ("conv", "dwconv", "mul"))
    assert counted == network_cost(genome, 384, scaling=scaling).multiply_adds


def test_batch_norm_folds_relu_fuses_and_swish_stays_a_kernel():
    ops = collections.Counter((k.op, k.act) for k in kernels_of(SPINENET_49, Scaling()))
    # Every batch norm follows a convolution (folded); a ReLU after one, or after a residual add, fuses.
    assert ops == {("conv", "relu"): 82, ("conv", "none"): 48, ("add", "relu"): 32, ("maxpool", "none"): 11,
                   ("upsample", "none"): 5}
    mobile = collections.Counter((k.op, k.act) for k in kernels_of(SPINENET_MOBILE_49, MOBILE, activation="swish"))
    assert mobile[("act", "swish")] == 85 and mobile[("act", "hard_sigmoid")] == 18
    assert mobile[("conv", "relu")] == 18  # the squeeze-excitation's own ReLU still fuses
    assert ("bn", "none") not in mobile


def test_a_block_with_only_a_keras_build_is_named():
    register_block_fn("opaque", expansion=1, build=lambda x, *a, **k: x,
                      count_params=lambda c, f, p: 0, count_multiply_adds=lambda c, f, h, w, p: 0)
    try:
        specs = [(l, "opaque" if i == 3 else fn, ps, o) for i, (l, fn, ps, o) in enumerate(SPINENET_49.to_block_specs())]
        with pytest.raises(UnplannableLayer, match="layer block4_unit1: block fn 'opaque' has only a Keras build"):
            kernels_of(Genome.from_block_specs(specs), Scaling())
    finally:
        BLOCK_FNS.pop("opaque")


def test_the_table_round_trips_and_is_refused_elsewhere(tmp_path):
    path = str(tmp_path / "table.json")
    table = new_table(1)
    table.kernels["add k1 s1 8>8 4x4 +none n2"] = {"ms": 0.5, "spread_ms": 0.01, "op": "add", "multiply_adds": 128,
                                                   "elements": 384}
    table.models.append({"name": "g@64:detection", "kernel_ms": 2.0, "measured_ms": 2.5})
    table.save(path)
    again = load_table(path, 1)
    assert again.kernels == table.kernels and again.models == table.models and again.identity == table.identity
    with pytest.raises(CalibrationMismatch, match="threads 1 there, 2 here"):
        load_table(path, 2)
    data = json.load(open(path))
    data["identity"]["processor"] = "Some Other CPU"
    data["identity"]["litert"] = "0.0.1"
    json.dump(data, open(path, "w"))
    with pytest.raises(CalibrationMismatch, match="processor 'Some Other CPU' there.*litert '0.0.1' there"):
        load_table(path, 1)
    open(path, "w").write("{not json")
    with pytest.raises(ValueError, match="table.json: not a spinenas latency calibration table"):
        load_table(path, 1)
    with pytest.raises(FileNotFoundError, match="spinenas latency --calibrate"):
        load_table(str(tmp_path / "none.json"), 1)
    assert load_table(str(tmp_path / "none.json"), 1, missing_ok=True) is None


def test_every_kernel_kind_converts_and_times(tmp_path):
    kernels = [Kernel("conv", 16, 16, 8, 16, 3, 2, act="relu"), Kernel("dwconv", 16, 16, 8, 8, 5),
               Kernel("add", 8, 8, 8, 8, inputs=3, act="relu"), Kernel("maxpool", 16, 16, 8, 8, 3, 2),
               Kernel("upsample", 4, 4, 8, 8, scale=4), Kernel("mean", 8, 8, 8, 8),
               Kernel("mul", 8, 8, 8, 8, inputs=2), Kernel("act", 8, 8, 8, 8, act="swish"),
               Kernel("act", 1, 1, 8, 8, act="hard_sigmoid"), Kernel("dense", 1, 1, 8, 4),
               Kernel("bn", 8, 8, 8, 8)]
    assert {k.op for k in kernels} == set(STANDARD_BUILDERS)
    table = new_table(1)
    saves = []
    measure_kernels(table, kernels, repeats=3, min_seconds=0.0, save=lambda: saves.append(len(table.kernels)),
                    save_every=5)
    assert set(table.kernels) == {k.key for k in kernels}
    assert all(entry["ms"] >= 0 and entry["op"] == k.op for k, entry in zip(kernels, table.kernels.values()))
    assert table.baseline_ms > 0
    assert saves == [5, 10, 11]  # a killed calibration keeps what it timed
    with pytest.raises(ValueError, match="no builder for op 'detect'"):
        measure_kernels(table, [Kernel("detect", 100, 1, 3, 3)])


def fake_entry(op, ms, kernel=None):
    kernel = kernel or Kernel(op, 8, 8, 8, 8)
    return {"ms": ms, "spread_ms": 0.0, "op": op, "multiply_adds": kernel.multiply_adds, "elements": kernel.elements}


def test_the_predictor_sums_measured_kernels_estimates_the_rest_and_scales_to_whole_models():
    convs = [Kernel("conv", s, s, c, c, 3) for s, c in ((8, 8), (16, 8), (16, 16), (32, 16), (32, 32))]
    table = CalibrationTable({}, kernels={k.key: fake_entry("conv", 1e-9 * k.multiply_adds + 0.01, k) for k in convs})
    plain = LatencyPredictor(table)
    assert plain.predict(convs).ms == pytest.approx(sum(1e-9 * k.multiply_adds + 0.01 for k in convs))
    assert plain.predict(convs).estimated == 0
    unseen = Kernel("conv", 64, 64, 32, 32, 3)
    ms, measured = plain.kernel_ms(unseen)
    assert not measured and ms == pytest.approx(1e-9 * unseen.multiply_adds + 0.01, rel=0.05)
    assert plain.predict([*convs, unseen]).estimated == 1
    # Whole models measured at 1.2x their kernel sum plus 0.5 ms: the fit recovers both.
    table.models = [{"name": f"m{i}", "kernel_ms": s, "measured_ms": 1.2 * s + 0.5} for i, s in enumerate((2, 5, 9))]
    scaled = LatencyPredictor(table)
    assert (scaled.scale, scaled.per_kernel_ms, scaled.offset_ms) == (pytest.approx(1.2), 0.0, pytest.approx(0.5))
    total = plain.predict(convs).ms
    assert scaled.predict(convs).ms == pytest.approx(1.2 * total + 0.5)
    # With four or more, a cost per kernel as well: 0.9 x sum - 0.01 ms per kernel + 0.2 ms.
    table.models = [{"name": f"m{i}", "kernel_ms": s, "kernels": n, "measured_ms": 0.9 * s - 0.01 * n + 0.2}
                    for i, (s, n) in enumerate(((2, 10), (5, 40), (9, 60), (12, 70), (20, 100)))]
    fitted = LatencyPredictor(table)
    assert (fitted.scale, fitted.per_kernel_ms, fitted.offset_ms) == (
        pytest.approx(0.9), pytest.approx(-0.01), pytest.approx(0.2))
    with pytest.raises(ValueError, match="holds no kernels"):
        LatencyPredictor(CalibrationTable({})).kernel_ms(unseen)


# A search with latency --------------------------------------------------------------------------------------------

def made_up_table(meters, genomes, path):
    """A table holding every kernel of ``genomes`` (times made up from their work) and their whole models."""
    from nas.search.latency import model_name

    table = new_table(meters[0].threads)
    for meter in meters:
        for genome in genomes:
            for k in meter.kernels(genome):
                table.kernels[k.key] = {"ms": 1e-6 * k.multiply_adds + 1e-5 * k.elements / 1e3 + 0.002,
                                        "spread_ms": 0.0, "op": k.op, "multiply_adds": k.multiply_adds,
                                        "elements": k.elements}
    predictor = LatencyPredictor(table)
    for meter in meters:
        for genome in genomes:
            total, _, _ = predictor.kernel_sum(meter.kernels(genome))
            table.models.append({"name": model_name(meter, genome), "kernel_ms": total, "measured_ms": 1.1 * total})
    table.save(str(path))
    return table


def latency_experiment(tmp_path, **search):
    from tests.test_search import tiny_experiment

    table = tmp_path / "latency_table.json"
    return tiny_experiment(tmp_path, search={"latency": {"table": str(table), "input_size": 128}, **search}), table


def test_a_search_records_predicted_latency_and_drops_genomes_over_the_limit(tmp_path, monkeypatch):
    import nas.search.latency
    from nas.experiment import load_experiment
    from nas.search.driver import prepare, run_search
    from nas.search.latency import _search_genomes, meter_for
    from tests.test_search import fake_metrics, fake_training

    monkeypatch.chdir(tmp_path)
    fake_training(monkeypatch, lambda genome, config, out_dir, report=None: fake_metrics(0.3))
    path, table_path = latency_experiment(tmp_path, objectives=[{"AP": "maximize"}, {"latency_ms": "minimize"}])
    experiment = load_experiment(path)
    meter = meter_for(experiment, prepare(experiment, log=lambda line: None).num_classes)
    pool = _search_genomes(experiment)
    made_up_table([meter], pool, table_path)
    # The limit between the pool's latencies, so some sampled genomes are over it.
    latencies = sorted(meter.predict(g).ms for g in pool)
    limit = latencies[len(latencies) // 4]
    experiment = load_experiment(path, [f"search.constraints.max_latency_ms={limit}", "search.n_trials=4"])
    # Everything the search needs is in the table: no calibration process may start.
    monkeypatch.setattr(nas.search.latency, "in_child", lambda *a: pytest.fail("calibrated a complete table"))
    lines = []
    study = run_search(experiment, log=lines.append)
    assert any("latency: predicted for the deployed model at 128 px with 1 LiteRT thread(s)" in line for line in lines)
    trials = study.get_trials(deepcopy=False)
    assert trials and all("latency_ms" in t.user_attrs for t in trials)
    for trial in trials:
        genome = Genome.from_yaml(trial.user_attrs["genome"])
        assert trial.user_attrs["latency_ms"] == pytest.approx(meter.predict(genome).ms)
        assert trial.user_attrs["latency"] == {"source": "predicted", "input_size": 128, "threads": 1}
        over = trial.user_attrs["latency_ms"] > limit
        assert bool(trial.user_attrs.get("infeasible")) == over
        if trial.state.name == "COMPLETE":
            assert trial.values[1] == trial.user_attrs["latency_ms"]
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4
    assert any(t.user_attrs.get("infeasible") for t in trials)
    # The report plots AP against latency and lists each trial's latency.
    from visualize.report import write_report

    page = open(write_report(study, str(tmp_path / "report"))).read()
    assert (tmp_path / "report" / "ap_vs_latency.png").stat().st_size > 0
    assert "<th>latency</th>" in page and "AP against deployed latency" in page


def test_a_table_from_another_machine_stops_the_search_before_any_trial(tmp_path, monkeypatch, capsys):
    from nas.cli import main

    monkeypatch.chdir(tmp_path)
    path, table_path = latency_experiment(tmp_path, constraints={"max_latency_ms": 5.0})
    table = new_table(1)
    table.identity["processor"] = "Another CPU"
    table.save(str(table_path))
    assert main(["search", path]) == 2
    printed = capsys.readouterr().err
    err = printed.splitlines()[-1]  # after the shapes' progress bars, when this test makes them
    assert err.startswith("spinenas: error: ") and "Traceback" not in printed
    assert f"{table_path} was measured elsewhere (processor 'Another CPU' there" in err
    assert "spinenas latency --calibrate" in err
    import optuna

    assert all(not s.n_trials for s in optuna.study.get_all_study_summaries(f"sqlite:///{tmp_path}/study.db"))
    # --calibrate, as the message says, sets the table aside and measures this machine's (before, it refused too).
    from nas.experiment import load_experiment
    from nas.search.latency import calibrate, meter_for

    lines = []
    fresh = calibrate([meter_for(load_experiment(path), 6)], [], models=0, log=lines.append, progress=False)
    kept = tmp_path / f"{table_path.stem}.replaced-1.json"
    assert json.loads(kept.read_text())["identity"]["processor"] == "Another CPU"
    assert load_table(str(table_path), 1).identity == fresh.identity == new_table(1).identity
    assert lines[0] == (f"latency calibration: {table_path} was measured elsewhere (processor 'Another CPU' there, "
                        f"{new_table(1).identity['processor']!r} here); measuring a new one (the old one is kept as "
                        f"{kept})")


@pytest.mark.parametrize("edit, message", [
    ({"latency": {"thread": 2}}, r"search.latency.thread: unknown key \(did you mean 'threads'\?\)"),
    ({"latency": {"source": "guessed"}}, "search.latency.source"),
    ({"constraints": {"max_latency_ms": -3}}, "max_latency_ms: must be positive"),
    ({"objectives": [{"latency": "minimize"}]}, r"unknown metric 'latency' \(did you mean 'latency_ms'\?\)"),
])
def test_bad_latency_settings_name_the_key(tmp_path, edit, message):
    from nas.config import ConfigError
    from nas.experiment import load_experiment
    from tests.test_search import tiny_experiment

    with pytest.raises(ConfigError, match=message):
        load_experiment(tiny_experiment(tmp_path, search=edit))


def test_latency_is_used_when_named_anywhere(tmp_path):
    from nas.experiment import load_experiment
    from tests.test_search import tiny_experiment

    assert load_experiment(tiny_experiment(tmp_path)).latency is None
    named = load_experiment(tiny_experiment(tmp_path, search={"objectives": [{"latency_ms": "minimize"}]}))
    assert named.latency.source == "predicted" and named.latency.threads == 1
    limited = load_experiment(tiny_experiment(tmp_path, search={"constraints": {"max_latency_ms": 9}}))
    assert limited.latency is not None


def test_the_latency_command_completes_the_table_then_measures_and_predicts(tmp_path, monkeypatch, capsys):
    from nas.cli import main
    from nas.experiment import load_experiment
    from nas.search.latency import meter_for
    from tests.test_detection import TINY_GENOME
    from tests.test_search import tiny_experiment

    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"latency": {"input_size": 64}})
    table_path = tmp_path / "table.json"
    experiment = load_experiment(path)
    meter = meter_for(experiment, 6)  # the shapes' six categories
    made_up_table([meter], [TINY_GENOME], table_path)
    # Leave three kernels out, the detector's post-process among them: --calibrate times just those.
    data = json.load(open(table_path))
    dropped = [k for k in data["kernels"] if k.startswith("detect")] + [k for k in data["kernels"]
                                                                        if k.startswith("conv")][:2]
    for key in dropped:
        del data["kernels"][key]
    json.dump(data, open(table_path, "w"))
    common = ["latency", "seed.yaml", "--experiment", path, "--table", str(table_path), "--repeats", "3"]
    assert main([*common, "--predict-only", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)["rows"][0]
    assert before["estimated_kernels"] == sum(k.key in dropped for k in meter.kernels(TINY_GENOME))
    assert "litert" not in before
    assert main([*common, "--calibrate", "--genomes", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    row = report["rows"][0]
    assert report["num_classes"] == 6 and report["threads"] == 1
    assert row["genome"] == TINY_GENOME.fingerprint and row["input_size"] == 64 and row["estimated_kernels"] == 0
    for runtime in ("litert", "tensorflow"):
        assert row[runtime]["runs"] >= 3 and 0 < row[runtime]["q25_ms"] <= row[runtime]["median_ms"] <= row[runtime]["q75_ms"]
    table = json.load(open(table_path))
    assert set(dropped) <= set(table["kernels"]) and len(table["kernels"]) == len(data["kernels"]) + 3
    assert main([*common, "--predict-only"]) == 0
    out = capsys.readouterr().out
    assert "batch 1, 1 LiteRT thread(s)" in out and f"{TINY_GENOME.fingerprint}  spinenet" in out
    # Bad input: one line each.
    assert main([*common, "--runtime", "onnx"]) == 2
    assert "--runtime 'onnx': choose from litert, tensorflow" in capsys.readouterr().err
    assert main(["latency", "nope.yaml", "--experiment", path]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_measured_latency_times_each_genome_once(tmp_path, monkeypatch):
    import nas.search.objective
    from nas.experiment import load_experiment
    from nas.search.latency import _measure_genome
    from nas.search.objective import Objective
    from tests.test_detection import TINY_GENOME
    from tests.test_search import tiny_experiment

    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"latency": {"source": "measured", "input_size": 64, "repeats": 3},
                                             "constraints": {"max_latency_ms": 1e6}})
    experiment = load_experiment(path)
    # The child's work, here in-process: a real LiteRT timing of the deployed detector.
    ms = _measure_genome(experiment, 6, TINY_GENOME.to_dict())
    assert 0 < ms < 1e4
    calls = []
    monkeypatch.setattr(nas.search.objective, "measure_in_child",
                        lambda exp, classes, genome: calls.append(genome.fingerprint) or ms)
    objective = Objective(experiment, experiment.search_space.build(), 6, log=lambda line: None)
    try:
        assert objective.budget(TINY_GENOME) == [pytest.approx(ms / 1e6 - 1)]
        assert objective.latency_ms(TINY_GENOME) == ms
    finally:
        objective.close()
    assert calls == [TINY_GENOME.fingerprint]


def test_a_genome_whose_latency_cannot_be_measured_fails_alone(tmp_path, monkeypatch):
    # Before, the error from the measuring child stopped the whole search.
    import nas.search.latency
    from nas.experiment import load_experiment
    from nas.search.driver import run_search
    from tests.test_search import fake_metrics, fake_training, tiny_experiment

    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"latency": {"source": "measured", "input_size": 64, "repeats": 3},
                                             "constraints": {"max_latency_ms": 1e6}})
    calls = []

    def measure(target, experiment, classes, genome_data):
        calls.append(genome_data)
        if len(calls) == 1:
            raise RuntimeError("converting the model failed\n<a page of MLIR>")
        return 5.0

    monkeypatch.setattr(nas.search.latency, "in_child", measure)
    fake_training(monkeypatch, lambda *a, **k: fake_metrics(0.3))
    lines = []
    study = run_search(load_experiment(path), log=lines.append)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 3
    fingerprint = Genome.from_dict(calls[0]).fingerprint
    reason = (f"measured latency: genome {fingerprint}: timing its deployed model failed: RuntimeError: converting "
              "the model failed")
    assert failed[0].user_attrs["fail_reason"] == reason and failed[0].user_attrs["fingerprint"] == fingerprint
    assert f"trial {failed[0].number}: {reason}; not trained" in lines
    assert all(t.user_attrs["latency_ms"] == 5.0 for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)


def test_a_measuring_process_that_dies_is_named_not_waited_for(monkeypatch):
    import os
    from concurrent.futures.process import BrokenProcessPool

    import nas.search.latency
    from nas.search.latency import LatencyUnavailable, in_child, measure_in_child
    from tests.test_detection import TINY_GENOME

    with pytest.raises(BrokenProcessPool):  # a multiprocessing.Pool waited for ever here
        in_child(os._exit, 3)

    def die(*args):
        raise BrokenProcessPool("gone")

    monkeypatch.setattr(nas.search.latency, "in_child", die)
    with pytest.raises(LatencyUnavailable, match=f"genome {TINY_GENOME.fingerprint}: the process timing its "
                                                 "deployed model died"):
        measure_in_child(None, 6, TINY_GENOME)


def test_upsampling_is_one_litert_resize_at_inference_and_a_broadcast_in_training(capsys):
    # The broadcast made LiteRT spend 72 ms on one 2x2 -> 128x128 upsampling (a resize: 0.2 ms).
    import tensorflow as tf

    from spinenet.blocks import NearestUpsampling
    from spinenet.latency.calibration import STANDARD_BUILDERS
    from spinenet.latency.runtime import convert_to_litert

    rng = np.random.default_rng(0)
    for scale, shape in ((2, [1, 3, 5, 4]), (8, [2, 2, 2, 3]), (64, [1, 2, 2, 1])):
        x = tf.constant(rng.standard_normal(shape).astype(np.float32))
        layer = NearestUpsampling(scale)
        trained, served = layer(x, training=True).numpy(), layer(x, training=False).numpy()
        assert served.shape == (shape[0], shape[1] * scale, shape[2] * scale, shape[3])
        assert np.array_equal(trained, served) and np.array_equal(served, layer(x).numpy())
    function, _, holder = STANDARD_BUILDERS["upsample"](Kernel("upsample", 2, 2, 8, 8, scale=64))
    capsys.readouterr()
    tf.lite.experimental.Analyzer.analyze(model_content=convert_to_litert(function, trackable=holder))
    ops = capsys.readouterr().out
    assert "RESIZE_NEAREST_NEIGHBOR" in ops and "BROADCAST_TO" not in ops


def test_a_confirmation_judges_latency_as_the_search_did(tmp_path, monkeypatch):
    import nas.search.latency
    from nas.confirm import format_verdict, run_confirm
    from nas.experiment import load_experiment
    from nas.search.driver import prepare, run_search
    from nas.search.latency import _search_genomes, meter_for
    from tests.test_confirm import _genome_ap
    from tests.test_search import fake_metrics, fake_training, tiny_experiment

    monkeypatch.chdir(tmp_path)
    table = tmp_path / "latency_table.json"
    path = tiny_experiment(tmp_path, search={"n_trials": 4, "objectives": [{"AP": "maximize"}, {"latency_ms": "minimize"}],
                                             "latency": {"table": str(table), "input_size": 128}},
                           confirm={"top_k": 2, "repeats": 2})
    experiment = load_experiment(path)
    meter = meter_for(experiment, prepare(experiment, log=lambda line: None).num_classes)
    made_up_table([meter], _search_genomes(experiment), table)
    monkeypatch.setattr(nas.search.latency, "in_child", lambda *a: pytest.fail("calibrated a complete table"))
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(
        _genome_ap(genome, config["task"]["training"]["seed"])))
    study = run_search(experiment, log=lambda line: None)
    searched = {t.user_attrs["fingerprint"]: t.user_attrs["latency_ms"] for t in study.get_trials(deepcopy=False)}
    result = run_confirm(experiment, log=lambda line: None)
    assert result["objectives"] == ["AP", "latency_ms"] and result["pareto"]
    seed_ms = meter.predict(Genome.load("seed.yaml")).ms
    rows = result["seeds"][0]["candidates"]
    assert len(rows) == 2
    for row in rows:  # the latency the search recorded for the genome, and its ratio to the seed's
        assert row["latency_ms"] == pytest.approx(searched[row["fingerprint"]])
        assert row["latency_ratio"] == pytest.approx(row["latency_ms"] / seed_ms)
    assert " latency" in format_verdict(result).splitlines()[1]
