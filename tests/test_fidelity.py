"""spinenas fidelity: the fidelities section, the plan, resuming studies, the table, the statistics, end to end."""

import json
import math
import os
import socket
import subprocess
import time

import optuna
import pytest
import yaml

from nas.cli import main
from nas.config import ConfigError
from nas.experiment import load_experiment, load_train_config
from nas.fidelity import (export_jsonl, fidelity_report, format_report, load_genomes, load_table, make_plan,
                          open_fidelity_study, rank_pair, records_from_study, run_fidelity)
from nas.fidelity.work_queue import claim, describe_time_left, time_left
from tests.test_detection import TINY_GENOME
from tests import instant_task
from tests.test_search import fake_metrics, fake_training, tiny_experiment

TWO = {"quick": {"task.training.epochs": 1}, "long": {"task.training.epochs": 2}}


def fidelity_experiment(tmp_path, fidelities=None, **sections):
    """The tiny search experiment of tests/test_search.py with a fidelities section (in the order given)."""
    path = tiny_experiment(tmp_path, **sections)
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    data["fidelities"] = fidelities or TWO
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)  # the order of fidelities is their cost order
    return path


# ------------------------------------------------------------------ schema


def test_fidelities_leave_the_fingerprint_alone_and_old_files_load(tmp_path):
    plain = load_experiment(tiny_experiment(tmp_path))
    assert plain.fidelities == {} and list(plain.fidelity_configs()) == ["proxy"]
    assert plain.reference_fidelity == "proxy"
    with_fidelities = load_experiment(fidelity_experiment(tmp_path, {**TWO, "reference": "long"}))
    assert with_fidelities.fingerprint == plain.fingerprint
    assert plain.matches(with_fidelities.fingerprint, with_fidelities.to_data())
    configs = with_fidelities.fidelity_configs()
    assert [c.task.training.epochs for c in configs.values()] == [1, 2]
    assert with_fidelities.reference_fidelity == "long"
    nested = load_experiment(fidelity_experiment(tmp_path), ["fidelities.quick.task.training.epochs=3"])
    assert nested.fidelity_configs()["quick"].task.training.epochs == 3


def test_shipped_fidelity_experiment_measures_the_shipped_proxy():
    experiment = load_experiment("experiments/fidelity_shapes.yaml")
    configs = experiment.fidelity_configs()
    assert list(configs) == ["quick", "photos", "proxy", "long"] and experiment.reference_fidelity == "long"
    photos = configs["photos"].task
    assert photos.data.root == "data/trees" and photos.data.generate_shapes is None and photos.training.epochs == 60
    assert configs["proxy"] == load_train_config("experiments/proxy_shapes.yaml")
    assert configs["long"].task.training.epochs == 3 * configs["proxy"].task.training.epochs
    assert configs["quick"].task.training.epochs < configs["proxy"].task.training.epochs


def test_committed_table_matches_the_shipped_fidelities():
    # Every recorded run was trained with the settings experiments/fidelity_shapes.yaml gives its fidelity
    # now; a changed default or YAML value would silently drop runs from the report as stale.
    from nas.fidelity.plan import current_settings

    path = "bench/results/fidelity_fidelity_shapes.jsonl"
    current = current_settings(load_experiment("experiments/fidelity_shapes.yaml"))
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    records = load_table(path)
    # What the table is: 150 finished runs, one per line (none dropped as a repeated item).
    assert len(lines) == len(records) == 150
    assert all(r["state"] == "COMPLETE" for r in records)
    stale = sorted({r["fidelity"] for r in records if current.get(r["fidelity"]) != r["fidelity_fingerprint"]})
    assert stale == [], f"runs of {stale} were trained with other settings than the experiment gives now"
    # Every run loads as a run of its genome with the current settings: none is left out.
    rows = load_genomes(path, settings=current)
    assert sum(sum(row.seeds.values()) for row in rows) == 150 and len(rows) == 60
    assert {f: sum(f in row.seeds for row in rows) for f in current} == {"quick": 30, "photos": 20, "proxy": 60,
                                                                           "long": 20}
    assert [row.role for row in rows].count("seed") == 1 and [row.role for row in rows].count("reference") == 1
    seed = next(row for row in rows if row.role == "seed")
    assert seed.seeds == {"quick": 6, "photos": 6, "proxy": 6, "long": 6} and 0.3 < seed.objective["proxy"] < 0.6
    assert all(runs == 1 for row in rows if row.role != "seed" for runs in row.seeds.values())


@pytest.mark.parametrize("fidelities, message", [
    ({"quick": {"task.training.epoch": 1}}, r"fidelities.quick: task.training.epoch: unknown key \(did you mean"),
    ({"quick": {"search.n_trials": 1}}, r"fidelities.quick.search.n_trials: a fidelity overrides model"),
    ({"quick": 3}, r"fidelities.quick: expected a mapping of overrides"),
    ({"quick": {}, "reference": "qick"}, r"fidelities.reference: 'qick' is not a fidelity \(did you mean 'quick'"),
    ({"reference": "quick"}, r"fidelities: lists no fidelity"),
])
def test_bad_fidelities_name_the_key(tmp_path, fidelities, message):
    path = fidelity_experiment(tmp_path, fidelities)
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)


# -------------------------------------------------------------------- plan


def test_plan_is_seeded_extends_and_says_what_is_left_out(tmp_path):
    experiment = load_experiment(fidelity_experiment(tmp_path))
    small = make_plan(experiment, 3, repeats=2)
    big = make_plan(experiment, 6, repeats=2)
    assert small.genomes[0] == ("seed", TINY_GENOME)
    assert [g.fingerprint for _, g in small.genomes] == [g.fingerprint for _, g in big.genomes[:3]]
    assert any("r50-like left out" in note and "L3-L5" in note for note in small.notes)
    assert len({g.fingerprint for _, g in big.genomes}) == 6
    # 3 genomes x 2 fidelities, then 2 repeats of the seed genome at both fidelities.
    assert len(small.items) == 3 * 2 + 2 * 2 and len(small.keys) == len(small.items)
    repeats = [item for item in small.items if item.repeat]
    assert {item.genome.fingerprint for item in repeats} == {TINY_GENOME.fingerprint}
    assert sorted({item.seed for item in repeats}) == [1, 2]
    assert len(make_plan(experiment, 3, repeats_all=1).items) == 3 * 2 * 2
    # Changing a fidelity's settings makes new work under the same name.
    changed = load_experiment(fidelity_experiment(tmp_path), ["fidelities.quick.task.training.warmup_steps=1"])
    assert make_plan(changed, 3).keys != make_plan(experiment, 3).keys


def test_caps_per_fidelity_and_repeats_spread_among_the_genomes(tmp_path):
    experiment = load_experiment(fidelity_experiment(tmp_path))
    plan = make_plan(experiment, 6, repeats=2, genomes_at={"long": 2})
    order = [(item.genome.fingerprint, item.fidelity, item.repeat) for item in plan.items]
    genome = [g.fingerprint for _, g in plan.genomes]
    # Every genome at quick, only the first two at long; the seed's k-th repeat follows genome 2k.
    assert order == [
        (genome[0], "quick", 0), (genome[0], "long", 0), (genome[1], "quick", 0), (genome[1], "long", 0),
        (genome[0], "quick", 1), (genome[0], "long", 1), (genome[2], "quick", 0), (genome[3], "quick", 0),
        (genome[0], "quick", 2), (genome[0], "long", 2), (genome[4], "quick", 0), (genome[5], "quick", 0)]
    # Fewer genomes than the repeats need: the rest follow the last genome (the set of runs is unchanged).
    assert make_plan(experiment, 2, repeats=3).keys == {
        *make_plan(experiment, 2).keys, *(i.key for i in make_plan(experiment, 2, repeats_all=3).items
                                           if i.genome.fingerprint == genome[0])}
    with pytest.raises(ValueError, match="'proxi', not a fidelity"):
        make_plan(experiment, 2, genomes_at={"proxi": 1})
    with pytest.raises(ValueError, match="at least 1"):
        make_plan(experiment, 2, genomes_at={"long": 0})
    # A cap beyond the genomes caps nothing; repeats of every genome follow the seed's own.
    assert make_plan(experiment, 3, genomes_at={"long": 10}).keys == make_plan(experiment, 3).keys
    both = make_plan(experiment, 3, repeats=2, repeats_all=1, genomes_at={"long": 1})
    assert sorted((i.genome.fingerprint == genome[0], i.fidelity, i.repeat) for i in both.items if i.repeat) == [
        (False, "quick", 1), (False, "quick", 1), (True, "long", 1), (True, "long", 2), (True, "quick", 1),
        (True, "quick", 2)]


def test_genomes_at_is_checked_on_the_command_line(tmp_path, capsys):
    from nas.cli import main

    path = fidelity_experiment(tmp_path)
    assert main(["fidelity", path, "--genomes-at", "long"]) == 2
    assert "expected NAME=N" in capsys.readouterr().err
    assert main(["fidelity", path, "--genomes-at", "lng=2", "--no-train"]) != 0
    assert "no fidelity 'lng'" in capsys.readouterr().err


def test_time_left_costs_each_fidelity_at_its_median_run():
    study = optuna.create_study()
    for item, fidelity, wall in [("a/quick", "quick", 100.0), ("b/quick", "quick", 120.0),
                                 ("c/quick", "quick", 1300.0),  # slowed by a paused machine
                                 ("a/long", "long", 600.0), ("z/other", "long", 9999.0)]:
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={
            "item": item, "fidelity": fidelity, "wall_time_s": wall}))
    for item, fidelity in [("d/quick", "quick"), ("e/quick", "quick"), ("e/quick", "quick"),  # queued twice
                           ("b/long", "long"), ("a/photos", "photos"), ("y/other", "quick")]:
        study.enqueue_trial({}, user_attrs={"item": item, "fidelity": fidelity})
    keys = {"a/quick", "b/quick", "c/quick", "d/quick", "e/quick", "a/long", "b/long", "a/photos"}
    assert time_left(study, keys) == (4, 2 * 120.0 + 600.0, ["photos"])
    assert describe_time_left(study, keys) == \
        "4 run(s) left, about 14 min of runs at the pace so far (photos not timed yet: no finished run)"
    assert describe_time_left(study, {"a/quick"}) == "no run left"


def test_r50_like_is_measured_in_the_papers_space():
    plan = make_plan(load_experiment("experiments/fidelity_shapes.yaml"), 3)
    assert [role for role, _ in plan.genomes] == ["seed", "reference", "sample"]
    assert not plan.notes


# -------------------------------------------------------------- statistics


def test_known_rankings_give_known_correlations():
    x = {"a": 1, "b": 2, "c": 3, "d": 4}
    same = rank_pair(x, {"a": 10, "b": 20, "c": 30, "d": 40}, "x", "y", top_k=2)
    assert (same["kendall_tau"], same["spearman_rho"], same["top_k"]["overlap"]) == (1.0, 1.0, 2)
    reverse = rank_pair(x, {"a": 4, "b": 3, "c": 2, "d": 1}, "x", "y", top_k=2)
    assert math.isclose(reverse["kendall_tau"], -1) and math.isclose(reverse["spearman_rho"], -1)
    assert reverse["top_k"]["overlap"] == 0
    swap = rank_pair(x, {"a": 1, "b": 2, "c": 4, "d": 3}, "x", "y")  # one adjacent swap of four
    assert math.isclose(swap["kendall_tau"], 4 / 6) and math.isclose(swap["spearman_rho"], 0.8)
    # A minimised metric: smaller is better on y, so the reversed order agrees.
    signs = rank_pair(x, {"a": 4, "b": 3, "c": 2, "d": 1}, "x", "y", sign_y=-1.0)
    assert math.isclose(signs["kendall_tau"], 1)


def test_ties_and_missing_pairs_are_handled_and_counted():
    tied = rank_pair({"a": 1, "b": 1, "c": 2, "d": 3}, {"a": 1, "b": 2, "c": 3, "d": 4}, "x", "y")
    assert tied["ties_x"] == 2 and tied["ties_y"] == 0 and "ties" in tied["note"]
    assert math.isclose(tied["kendall_tau"], 5 / math.sqrt(5 * 6))  # tau-b: (C - D) / sqrt((n0 - n1) n0)
    assert math.isclose(tied["spearman_rho"], 0.9486832980505138)
    constant = rank_pair({"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 2, "c": 3}, "x", "y")
    assert constant["kendall_tau"] is None and "all x values tie" in constant["note"]
    missing = rank_pair({"a": 1, "b": 2, "c": 3}, {"b": 5, "c": 6, "d": 7}, "x", "y")
    assert (missing["n"], missing["only_x"], missing["only_y"], missing["kendall_tau"]) == (2, 1, 1, 1.0)
    alone = rank_pair({"a": 1}, {"a": 2, "b": 3}, "x", "y")
    assert alone["n"] == 1 and alone["kendall_tau"] is None and "1 genome(s)" in alone["note"]


def record(genome, fidelity, value, seed=0, role="sample", state="COMPLETE", params=1.0):
    return {"item": f"{genome}/{fidelity}@f/{seed}", "fingerprint": genome, "fidelity": fidelity, "seed": seed,
            "role": role, "state": state, "value": value if state == "COMPLETE" else None, "metric": "AP",
            "params": params, "multiply_adds": 2 * params, "wall_time_s": 1.0, "fail_reason": None}


def test_report_leaves_failures_out_of_pairs_and_measures_seed_noise():
    records = [record("s", "quick", 0.30, role="seed", params=3), record("s", "long", 0.50, role="seed", params=3),
               record("s", "quick", 0.32, seed=1, role="seed", params=3),
               record("s", "quick", 0.28, seed=2, role="seed", params=3),
               record("a", "quick", 0.10, params=1), record("a", "long", 0.20, params=1),
               record("b", "quick", 0.20, params=2), record("b", "long", 0.30, params=2),
               record("c", "quick", 0.40, params=4), record("c", "long", None, state="FAIL", params=4)]
    report = fidelity_report(records, ["quick", "long"], direction="maximize", top_k=2)
    pair = report["pairs"][0]
    assert (pair["x"], pair["y"], pair["n"], pair["only_x"]) == ("quick", "long", 3, 1)
    assert pair["kendall_tau"] == 1.0  # s (mean of 3 seeds 0.30) > b > a at both
    params = report["against_reference"][0]
    assert params["x"] == "params" and params["n"] == 3 and params["kendall_tau"] == 1.0
    noise = report["seed_spread"]["quick"]
    assert (noise["n"], noise["min"], noise["max"]) == (3, 0.28, 0.32) and math.isclose(noise["std"], 0.02)
    assert report["counts"]["long"] == {"genomes": 3, "complete": 3, "failed": 1, "median_wall_s": 1.0}
    assert report["failures"] == [{"fingerprint": "c", "fidelity": "long", "seed": 0, "reason": None}]
    # quick: the seed's runs 0.28, 0.30, 0.32 (mean 0.30, s 0.02, n 3); one run each of a, b, c against them:
    # t = d / (0.02 sqrt(1 + 1/3)), df 2, two-sided p = 1 - t / sqrt(2 + t^2) (the t distribution with 2 df).
    # c (0.40, d +0.10): t^2 = 18.75, p = 1 - sqrt(18.75 / 20.75) = 0.0494; a (d -0.20): t^2 = 75, p = 0.0131;
    # b (d -0.10): 0.0494. Holm over the three: a 0.0392, c and b 2 x 0.0494 = 0.0988.
    quick = report["seed_standing"]["quick"]
    assert (quick["rank"], quick["of"], quick["seed_runs"], quick["tested"], quick["beats"]) == (2, 4, 3, 3, [])
    assert quick["closest"] is None  # c is better on average but has more multiply-adds than the seed
    assert report["seed_standing"]["long"]["beats"] is None  # one run of the seed: noise unknown
    cheap_c = fidelity_report([{**r, "multiply_adds": 1.0} if r["fingerprint"] == "c" else r for r in records],
                              ["quick", "long"])
    # Twice the seed's std (0.04) below c's lead of 0.10 made c "beat" the seed; corrected, p = 0.099 does not.
    near = cheap_c["seed_standing"]["quick"]["closest"]
    assert cheap_c["seed_standing"]["quick"]["beats"] == [] and near["fingerprint"] == "c"
    assert near["p"] == pytest.approx(1 - math.sqrt(18.75 / 20.75)) and near["test"] == "one run"
    assert near["p_holm"] == pytest.approx(2 * (1 - math.sqrt(18.75 / 20.75)))
    assert "rank 2 of 4; 0 beat it (Holm p < 0.05 over 3); closest c +0.100 (p 0.049, Holm 0.099)" \
        in format_report(cheap_c)
    # c at 0.50 (d +0.20, p 0.0131 like a's): Holm 0.0392 (a and c 3 x and 2 x 0.0131, then max), so it beats.
    clear_c = fidelity_report([{**r, "multiply_adds": 1.0, "value": 0.50 if r["fidelity"] == "quick" else r["value"]}
                               if r["fingerprint"] == "c" else r for r in records], ["quick", "long"])
    assert clear_c["seed_standing"]["quick"]["beats"] == ["c"]
    assert "rank 2 of 4; 1 beat it (Holm p < 0.05 over 3): c" in format_report(clear_c)  # the seed is second
    assert "noise unknown" in format_report(report)
    # Every genome, best at the reference first; one not measured there (c failed) last.
    listing = format_report(report).split("genomes: AP at each fidelity")[1].splitlines()[2:6]
    assert [line.split()[0] for line in listing] == ["s", "b", "a", "c"]
    assert listing[0].split() == ["s", "*", "0.300", "0.500"] and listing[3].split()[-1] == "-"
    json.dumps(report)  # what fidelity.json holds
    # Without a seed genome, the genome with the most runs (the one --repeats went to) stands in.
    unseeded = [{**r, "role": "sample"} for r in records]
    assert fidelity_report(unseeded, ["quick", "long"])["seed_genome"] == "s"


def test_costs_are_compared_at_one_fidelity(tmp_path):
    # Regression: a genome's costs depend on the fidelity's head (its class count), and the report and
    # load_genomes took each genome's costs from whichever record came first, so at "photos" (1 class) a
    # genome was compared with the seed's multiply-adds at "long" (6 classes) and looked cheaper than it was.
    def at(genome, fidelity, value, madds, seed=0, role="sample"):
        return {**record(genome, fidelity, value, seed=seed, role=role), "multiply_adds": madds, "params": madds / 2}

    records = [at("s", "long", 0.50, 100.0, role="seed"), at("s", "photos", 0.10, 90.0, role="seed"),
               at("s", "photos", 0.11, 90.0, seed=1, role="seed"), at("s", "photos", 0.09, 90.0, seed=2, role="seed"),
               at("x", "photos", 0.30, 95.0),  # better, but dearer than the seed at photos (95 > 90)
               at("y", "long", 0.40, 99.0), at("y", "photos", 0.05, 89.0)]
    report = fidelity_report(records, ["photos", "long"], direction="maximize")
    assert report["seed_standing"]["photos"]["beats"] == []
    path = tmp_path / "table.jsonl"
    path.write_text("".join(json.dumps({**r, "genome": TINY_GENOME.to_yaml(), "metrics": {"AP": r["value"]}})
                            + "\n" for r in records))
    rows = {row.fingerprint: row for row in load_genomes(str(path), "AP")}
    assert rows["y"].cost("photos", "multiply_adds") == 89.0 and rows["y"].cost("long", "multiply_adds") == 99.0
    assert rows["x"].cost("long", "multiply_adds") == 95.0  # not measured there: its first fidelity's


# ------------------------------------------------------- resume and table


def test_resume_repeats_nothing_and_redoes_an_orphan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = []

    def fake_train(genome, config, out_dir, report=None):
        if len(trained) == 3 and not os.environ.get("_FIDELITY_RESUMED"):
            raise KeyboardInterrupt  # killed mid-way through the fourth run
        trained.append((genome.fingerprint, config["task"]["training"]["epochs"], config["task"]["training"]["seed"]))
        return fake_metrics(0.1 * config["task"]["training"]["epochs"] + 0.01 * len(trained))

    fake_training(monkeypatch, fake_train)
    experiment = load_experiment(fidelity_experiment(tmp_path))
    quiet = lambda line: None  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        run_fidelity(experiment, 3, repeats=1, log=quiet)
    assert len(trained) == 3
    monkeypatch.setenv("_FIDELITY_RESUMED", "1")

    # A worker that died holding an item leaves it RUNNING: the next run fails it and trains it again.
    study = open_fidelity_study(experiment)
    plan = make_plan(experiment, 3, repeats=1)
    orphan = claim(study, plan.keys)
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan.set_user_attr("worker", {"host": socket.gethostname(), "pid": dead.pid})
    study, plan = run_fidelity(experiment, 3, repeats=1, log=quiet)
    assert len(trained) == len(plan.items) == 3 * 2 + 2
    assert len(set(trained)) == len(trained)  # nothing trained twice
    states = [t.state.name for t in study.trials]
    assert study.trials[orphan.number].state.name == "FAIL"
    assert "died during the trial" in study.trials[orphan.number].user_attrs["fail_reason"]
    assert states.count("COMPLETE") == len(plan.items) and "WAITING" not in states and "RUNNING" not in states

    # Run again, and with more genomes: only the new genomes train.
    run_fidelity(experiment, 3, repeats=1, log=quiet)
    assert len(trained) == 8
    study, plan = run_fidelity(experiment, 4, repeats=1, log=quiet)
    assert len(trained) == 10 and len(plan.items) == 10
    records = records_from_study(study)
    assert len(records) == 10 and all(r["state"] == "COMPLETE" for r in records)
    first = records[0]
    assert {"genome", "fingerprint", "fidelity", "seed", "metrics", "params", "multiply_adds", "timing",
            "wall_time_s", "versions", "machine", "settings"} <= set(first)
    assert first["versions"]["optuna"] and first["machine"]["host"] and first["params"] > 0

    # The exported table loads back the same, without the database.
    path = tmp_path / "bench" / "fidelity_tiny.jsonl"
    export_jsonl(records, str(path))
    assert load_table(path) == records == load_table(study)
    # One row per genome, each fidelity's metric the mean over its seeds.
    rows = load_genomes(path)
    assert [row.fingerprint for row in rows] == sorted({r["fingerprint"] for r in records}, key=[
        r["fingerprint"] for r in records].index)
    seed_row = next(row for row in rows if row.role == "seed")
    assert seed_row.genome.fingerprint == seed_row.fingerprint and seed_row.seeds == {"quick": 2, "long": 2}
    runs = [r["metrics"]["AP"] for r in records if r["fingerprint"] == seed_row.fingerprint and r["fidelity"] == "long"]
    assert seed_row.objective["long"] == pytest.approx(sum(runs) / 2)
    assert all(row.seeds == {"quick": 1, "long": 1} for row in rows if row is not seed_row)
    # Runs made with other settings of a fidelity's name are left out when the current settings are given.
    current = {name: next(r["fidelity_fingerprint"] for r in records if r["fidelity"] == name)
               for name in ("quick", "long")}
    assert load_genomes(path, settings=current)[0].seeds == rows[0].seeds
    assert all(set(row.seeds) == {"long"} for row in load_genomes(path, settings={**current, "quick": "old"}))

    # A fresh storage resumes from the committed table: nothing is trained again.
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    study, plan = run_fidelity(experiment, 4, repeats=1, log=quiet, storage_url=fresh, import_tables=[str(path)])
    assert len(trained) == 10 and load_table(study) == records  # trial numbers included: notes cite them
    lines = []
    run_fidelity(experiment, 4, repeats=1, log=lines.append, storage_url=fresh, import_tables=[str(path)])
    assert any(line.startswith("imported 0 run(s) from") for line in lines) and len(trained) == 10
    # Runs trained after the import are numbered after the table's last run, as the log says.
    lines = []
    study, _ = run_fidelity(experiment, 5, repeats=1, log=lines.append, storage_url=fresh)
    new = [r for r in load_table(study) if r["item"] not in {old["item"] for old in records}]
    last = max(r["trial"] for r in records)
    assert len(trained) == 12 and sorted(r["trial"] for r in new) == [last + 1, last + 2]
    assert any(line.startswith(f"trial {last + 1}: ") for line in lines)


def test_a_fidelity_without_its_data_is_named_and_can_be_left_out(tmp_path, monkeypatch, capsys):
    from nas.cli import main

    monkeypatch.chdir(tmp_path)
    fake_training(monkeypatch, lambda genome, config, out_dir, report=None: fake_metrics(0.2))
    photos = {"task.data": {"root": str(tmp_path / "no-photos"), "generate_shapes": None}}
    path = fidelity_experiment(tmp_path, {**TWO, "photos": photos})
    assert main(["fidelity", path, "--genomes", "1"]) == 2
    error = capsys.readouterr().err
    assert "fidelity photos:" in error and "no-photos" in error and "--fidelity NAME" in error
    assert main(["fidelity", path, "--genomes", "1", "--fidelity", "quick"]) == 0
    study = open_fidelity_study(load_experiment(path))
    assert [t.user_attrs["fidelity"] for t in study.trials] == ["quick"]


def test_training_failures_are_retried_then_given_up(tmp_path, monkeypatch):
    from nas.trials import TrialFailed

    monkeypatch.chdir(tmp_path)
    calls = []

    def fails_at_long(genome, config, out_dir, report=None):
        calls.append(config["task"]["training"]["epochs"])
        if config["task"]["training"]["epochs"] == 2:
            raise TrialFailed("ValueError: boom")
        return fake_metrics(0.3)

    fake_training(monkeypatch, fails_at_long)
    experiment = load_experiment(fidelity_experiment(tmp_path), ["search.max_retries=1"])
    lines = []
    for _ in range(3):
        study, _ = run_fidelity(experiment, 1, log=lines.append)
    assert calls == [1, 2, 2]  # quick once; long tried, retried once, then given up
    assert any("not retried" in line for line in lines)
    report = fidelity_report(records_from_study(study), ["quick", "long"])
    assert report["counts"]["long"]["failed"] == 1 and report["failures"][0]["reason"] == "ValueError: boom"
    assert report["pairs"][0]["n"] == 0


def test_a_trial_finished_elsewhere_while_it_trained_leaves_the_worker_running(tmp_path, monkeypatch):
    # Someone (or a second worker) failed the trial mid-training: its outcome stands, the worker goes on.
    monkeypatch.chdir(tmp_path)
    experiment = load_experiment(fidelity_experiment(tmp_path))
    study = open_fidelity_study(experiment)

    def fake_train(genome, config, out_dir, report=None):
        if not any("finished elsewhere" in line for line in lines):
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))[0]
            study._storage.set_trial_state_values(running._trial_id, optuna.trial.TrialState.FAIL)
        return fake_metrics(0.2)

    fake_training(monkeypatch, fake_train)
    lines = []
    study, _ = run_fidelity(experiment, 1, log=lines.append)
    assert sum("trial 0 was finished elsewhere while it trained" in line for line in lines) == 1
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE"]


def test_one_fidelity_at_a_time_and_reports_from_the_study(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    epochs = []

    def fake_train(genome, config, out_dir, report=None):
        epochs.append(config["task"]["training"]["epochs"])
        return fake_metrics(0.1 * len(epochs))

    fake_training(monkeypatch, fake_train)
    path = fidelity_experiment(tmp_path)
    assert main(["fidelity", path, "--genomes", "3", "--fidelity", "quick"]) == 0
    assert epochs == [1, 1, 1]
    out = capsys.readouterr().out
    assert "3 run(s) planned (3 genomes at quick" in out and "r50-like left out" in out
    assert main(["fidelity", path, "--genomes", "3", "--no-train", "--out", str(tmp_path / "r")]) == 0
    assert epochs == [1, 1, 1]
    report = json.loads((tmp_path / "r" / "fidelity.json").read_text())
    assert report["counts"]["quick"]["genomes"] == 3 and report["counts"]["long"]["genomes"] == 0
    assert report["pairs"][0]["n"] == 0 and "0 genome(s)" in report["pairs"][0]["note"]
    assert main(["fidelity", path, "--genomes", "3"]) == 0
    assert epochs == [1, 1, 1, 2, 2, 2]
    capsys.readouterr()
    assert main(["fidelity", path, "--genomes", "3", "--no-train", "--out", str(tmp_path / "p"),
                 "--scatter-x", "params"]) == 0
    assert "(long against params)" in capsys.readouterr().out
    assert (tmp_path / "p" / "scatter.png").stat().st_size > 0
    assert main(["fidelity", path, "--no-train", "--out", str(tmp_path / "p"), "--scatter-y", "params"]) == 2
    assert "--scatter-y params: choose one of quick, long" in capsys.readouterr().err
    assert main(["fidelity", path, "--fidelity", "slow"]) == 2
    assert "no fidelity 'slow'" in capsys.readouterr().err
    assert main(["fidelity", path, "--no-train", "--study-name", "nope"]) == 2
    assert "no fidelity study 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_fidelity_command_end_to_end(tmp_path, monkeypatch, capsys):
    # Two real workers sharing the study: 3 genomes x 2 fidelities, trained by tests/instant_task.py (real training
    # in a search's trials: tests/conftest.py's tiny_study).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", instant_task.instant_env()["PYTHONPATH"])
    path = fidelity_experiment(tmp_path, search={"objectives": [{"loss": "minimize"}]},
                               task={"name": instant_task.NAME, "evaluation": {"batch_size": 32, "every_epoch": False}})
    out, table = tmp_path / "report", tmp_path / "fidelity_tiny.jsonl"
    started = time.monotonic()
    assert main(["fidelity", path, "--genomes", "3", "--workers", "2", "--out", str(out),
                 "--export", str(table), "--top-k", "2"]) == 0
    elapsed = time.monotonic() - started
    text = capsys.readouterr().out
    assert "rank agreement" in text and "seed genome" in text
    report = json.loads((out / "fidelity.json").read_text())
    assert report["reference"] == "long" and report["metric"] == "loss" and report["direction"] == "minimize"
    assert report["counts"]["quick"]["genomes"] == report["counts"]["long"]["genomes"] == 3
    assert report["seed_spread"]["quick"]["n"] == 1 and report["seed_spread"]["quick"]["min"] is not None
    assert [p["x"] for p in report["against_reference"]] == ["params", "multiply_adds", "quick"]
    assert report["against_reference"][0]["n"] == 3
    assert all(-1 <= p["kendall_tau"] <= 1 and -1 <= p["spearman_rho"] <= 1 for p in report["against_reference"])
    assert (out / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    records = load_table(table)
    assert len(records) == 3 * 2 and all(r["state"] == "COMPLETE" for r in records)
    assert all(math.isfinite(r["value"]) and r["metrics"]["loss"] == r["value"] for r in records)
    assert len({r["machine"]["host"] for r in records}) == 1
    study = optuna.load_study(study_name="tiny-fidelity", storage=f"sqlite:///{tmp_path}/study.db")
    assert len(study.trials) == 6 and len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 2
    # Again: everything is recorded, so nothing trains; the table alone gives the same report.
    assert main(["fidelity", path, "--genomes", "3"]) == 0
    assert "0 queued now" in capsys.readouterr().out
    assert main(["fidelity", path, "--table", str(table), "--top-k", "2", "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "fidelity.json").read_text())
    assert again["pairs"] == report["pairs"] and again["counts"] == report["counts"]
    assert len(optuna.load_study(study_name="tiny-fidelity", storage=f"sqlite:///{tmp_path}/study.db").trials) == 6
    print(f"end to end: {elapsed:.0f} s for 6 runs on 2 workers")
