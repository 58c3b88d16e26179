"""The confirmation stage: retrain the best genomes and the seeds over several training seeds, and judge them."""

from __future__ import annotations

import json
import os
import zlib

import pytest

from nas.cli import main
from nas.config import ConfigError
from nas.confirm import format_verdict, run_confirm
from nas.experiment import load_experiment
from nas.search.driver import run_search
from tests.test_search import fake_metrics, fake_training, tiny_experiment


def _genome_ap(genome, seed: int, better: str = "") -> float:
    """A deterministic AP per genome and training seed: a genome-level value plus seed noise of +-0.005."""
    base = 0.30 + (zlib.crc32(genome.fingerprint.encode()) % 100) / 1000
    if genome.fingerprint == better:
        base += 0.2
    return base + ((seed * 7919) % 11 - 5) / 1000


def _searched(tmp_path, monkeypatch, confirm, n_trials=4, **search):
    """A tiny experiment with a confirm section whose search (faked training) is done."""
    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"n_trials": n_trials, **search}, confirm=confirm)
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(_genome_ap(genome, 0)))
    run_search(load_experiment(path), log=lambda line: None)
    return path


def test_a_confirmation_trains_each_genome_per_seed_once_and_resumes(tmp_path, monkeypatch):
    path = _searched(tmp_path, monkeypatch, {"top_k": 2, "repeats": 3})
    trained = []

    def train(genome, config, out_dir, report=None):
        trained.append((genome.fingerprint, config["task"]["training"]["seed"]))
        if len(trained) == 4:
            raise KeyboardInterrupt  # killed in the middle
        return fake_metrics(_genome_ap(genome, config["task"]["training"]["seed"]))

    fake_training(monkeypatch, train)
    with pytest.raises(KeyboardInterrupt):
        run_confirm(load_experiment(path), log=lambda line: None)
    result = run_confirm(load_experiment(path), log=lambda line: None)
    # 1 seed genome + 2 candidates, 3 training seeds each: 9 runs, the interrupted one trained again, nothing else.
    assert len(trained) == 10 and len(set(trained)) == 9
    assert sorted({seed for _, seed in trained}) == [0, 1, 2]
    block = result["seeds"][0]
    assert len(block["runs"]) == 3 and [len(result["runs"][r["fingerprint"]]) for r in block["candidates"]] == [3, 3]
    again = run_confirm(load_experiment(path), log=lambda line: None)  # all done: nothing trains
    assert len(trained) == 10 and again["seeds"] == result["seeds"]


def test_a_clear_winner_is_confirmed_and_exported(tmp_path, monkeypatch, capsys):
    path = _searched(tmp_path, monkeypatch, {"top_k": 2, "repeats": 3})
    experiment = load_experiment(path)
    from nas.confirm import candidates

    best = candidates(experiment)[0][1].fingerprint
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(
        _genome_ap(genome, config["task"]["training"]["seed"], better=best)))
    assert main(["confirm", path]) == 0
    out = capsys.readouterr().out
    assert f"winner: {best} beats" in out and "p (Holm)" in out
    result = run_confirm(experiment, log=lambda line: None, train=False)
    row = next(r for r in result["seeds"][0]["candidates"] if r["fingerprint"] == best)
    assert row["beats_seed"] and row["comparison"]["ci"][0] > 0 and row["p_holm"] < 0.05
    assert main(["results", path]) == 0
    assert f"winner: {best} beats" in capsys.readouterr().out
    assert main(["export", path, "--confirmed", "--out", str(tmp_path / "winner")]) == 0
    from search_spaces.genome import Genome

    assert Genome.load(str(tmp_path / "winner" / "genome.yaml")).fingerprint == best
    # Deployed as well: the winner's whole detector, with the class count of the experiment's data.
    assert main(["export", path, "--confirmed", "--saved-model", "--out", str(tmp_path / "deployed")]) == 0
    deploy = json.loads((tmp_path / "deployed" / "deploy.json").read_text())
    assert deploy["genome"] == best and deploy["num_classes"] == 6 and deploy["saved_model"]["batch"] == "any"
    assert os.path.isdir(tmp_path / "deployed" / "saved_model")


def test_no_winner_is_a_valid_result_in_one_line(tmp_path, monkeypatch, capsys):
    path = _searched(tmp_path, monkeypatch, {"top_k": 2, "repeats": 2})
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(
        0.4 + ((config["task"]["training"]["seed"] * 31) % 7) / 100))  # every genome alike: only seed noise
    result = run_confirm(load_experiment(path), log=lambda line: None)
    assert result["seeds"][0]["winner"] is None
    assert "no candidate beats seed.yaml beyond noise at this budget" in format_verdict(result)
    assert main(["export", path, "--confirmed", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to export: no candidate beats seed.yaml" in capsys.readouterr().err


def test_a_changed_confirm_section_is_new_work_and_old_runs_leave_the_verdict(tmp_path, monkeypatch):
    path = _searched(tmp_path, monkeypatch, {"top_k": 1, "repeats": 2})
    trained = []
    fake_training(monkeypatch, lambda genome, config, *a, **k: trained.append(config) or fake_metrics(0.4))
    run_confirm(load_experiment(path), log=lambda line: None)
    assert len(trained) == 4
    longer = load_experiment(path, ["confirm.settings={task.training.epochs: 2}"])
    result = run_confirm(longer, log=lambda line: None)
    assert len(trained) == 8 and all(c["task"]["training"]["epochs"] == 2 for c in trained[4:])
    assert all(len(runs) == 2 for runs in result["runs"].values())  # the epoch-1 runs are out of the verdict


@pytest.mark.parametrize("confirm, message", [
    ({"repeats": 1}, r"confirm.repeats: .*no variance to test with"),
    ({"top_k": 0}, r"confirm.top_k: must be at least 1, got 0"),
    ({"settings": {"search.n_trials": 3}}, r"confirm.settings.search.n_trials: .*model.\* or task.\*"),
])
def test_bad_confirm_sections_name_the_key(tmp_path, confirm, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(tiny_experiment(tmp_path, confirm=confirm))


def test_confirm_without_a_finished_search_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, confirm={"top_k": 1, "repeats": 2})
    assert main(["confirm", path]) == 2
    assert "spinenas search first" in capsys.readouterr().err
    missing = tiny_experiment(tmp_path, name="nodata", confirm={"data": str(tmp_path / "nowhere")})
    assert main(["confirm", missing]) == 2
    err = capsys.readouterr().err
    assert "instances_train.json" in err and "spinenas data import" in err


@pytest.mark.slow
def test_a_real_tiny_confirmation_trains_two_genomes_at_two_seeds(tmp_path, monkeypatch, warm_training):
    # CI's end-to-end run: 64x64, width 0.25, the seed and one candidate at two training seeds, trained for real.
    path = _searched(tmp_path, monkeypatch, {"top_k": 1, "repeats": 2}, n_trials=2)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    result = run_confirm(load_experiment(path), log=lambda line: None)
    runs = result["runs"]
    assert len(runs) == 2 and all(len(v) == 2 for v in runs.values())
    assert all(0.0 <= v <= 1.0 for values in runs.values() for v in values)
    row = result["seeds"][0]["candidates"][0]
    assert row["comparison"] is not None and row["p_holm"] is not None


def test_a_search_with_a_confirm_section_ends_with_the_verdict(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"n_trials": 3}, confirm={"top_k": 1, "repeats": 2})
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(
        _genome_ap(genome, config["task"]["training"]["seed"])))
    assert main(["search", path, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "confirming the best genomes" in out and "against seed.yaml" in out
    assert "beyond noise at this budget" in out


def test_a_time_split_is_the_confirmations_runs_at_the_measured_pace():
    from nas.search.time_split import TimeSplit

    split = TimeSplit(total=1000, runs=9, workers=2, ratio=2.0, factors={"epochs": 2.0})
    assert split.confirm_seconds is None and split.may_start_trial(999) and not split.may_start_trial(1000)
    assert "set once a search trial has been timed" in split.describe()
    timed = split.timed((40.0, 30.0))
    assert timed.run_seconds == 10.0 + 2.0 * 30.0  # the training part doubles, the rest stays
    assert timed.confirm_seconds == 5 * 70.0  # 9 runs on 2 workers: 5 rounds
    assert timed.search_seconds == 650.0
    # A 40 s trial may start until 630 s: it then ends by 670 s, half a trial past the search's 650 s.
    assert timed.may_start_trial(630) and not timed.may_start_trial(631)
    assert "search 650 s, confirmation 350 s" in timed.describe() and "epochs x2.00" in timed.describe()
    assert timed.timed(None) == timed


def test_plan_split_scales_by_epochs_multiply_adds_and_training_images(tmp_path):
    from nas.search.time_split import plan_split

    path = tiny_experiment(tmp_path, confirm={"top_k": 2, "repeats": 3, "settings": {
        "task.training.epochs": 3, "task.data.image_size": 128}})
    split = plan_split(load_experiment(path), 3600, 1, num_classes=3, search_images=96, confirm_images=192, seeds=1)
    assert split.runs == 9 and split.factors["epochs"] == 3.0 and split.factors["train images"] == 2.0
    assert 3.5 < split.factors["multiply-adds"] < 4.5  # twice the side: about four times the work per image
    assert split.ratio == pytest.approx(3.0 * 2.0 * split.factors["multiply-adds"])


@pytest.mark.slow
def test_a_timed_search_with_a_confirmation_ends_within_ten_percent_of_the_budget(tmp_path, monkeypatch, capsys):
    import time

    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"n_trials": 500}, confirm={
        "top_k": 1, "repeats": 2, "settings": {"task.training.epochs": 3}})

    def train(genome, config, out_dir, report=None):
        seconds = 0.5 * config["task"]["training"]["epochs"]  # a confirmation run trains 3 times as long
        time.sleep(seconds)
        return {**fake_metrics(_genome_ap(genome, config["task"]["training"]["seed"])), "timing": {"total": seconds}}

    fake_training(monkeypatch, train)
    budget = 20.0
    started = time.monotonic()
    assert main(["search", path, "--workers", "1", "--timeout", str(budget)]) == 0
    took = time.monotonic() - started
    out = capsys.readouterr().out
    assert "time budget 20 s: 4 confirmation run(s) on 1 worker(s), each 3.00x a search trial's training" in out
    assert "time budget 20 s: search " in out and "the rest of the 20 s budget is the confirmation's" in out
    assert "s in all of a 20 s budget" in out
    assert 0.9 * budget <= took <= 1.1 * budget, (took, out)


# ``spinenas confirm --workers 2`` with training faked; each spawned worker imports this script as its main module,
# so the fake reaches it, and every training is logged with the worker's pid.
_FAKE_CONFIRM = """
import os, sys, time
import nas.search.child

def train(self, genome, config, out_dir, report=None):
    time.sleep(0.5)
    seed = config["task"]["training"]["seed"]
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "trained.log"), "a") as log:
        log.write(f"{genome.fingerprint} {seed} {os.getpid()}\\n")
    ap = 0.3 + int(genome.fingerprint[:4], 16) / 16 ** 4 / 10 + seed / 1000
    return {"AP": ap, "AP50": ap, "AP75": ap, "APs": 0.0, "APm": 0.0, "APl": 0.0, "loss": 1.0,
            "timing": {"total": 0.5}, "history": []}

nas.search.child.TrialProcess.run = train
if __name__ == "__main__":
    from nas.cli import main
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_workers_share_a_confirmation_and_train_each_run_once(tmp_path, monkeypatch):
    import subprocess
    import sys

    path = _searched(tmp_path, monkeypatch, {"top_k": 2, "repeats": 3})
    (tmp_path / "fake_confirm.py").write_text(_FAKE_CONFIRM)
    done = subprocess.run([sys.executable, "fake_confirm.py", "confirm", path, "--workers", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "worker 0 started" in done.stdout and "worker 1 started" in done.stdout
    trained = [line.split() for line in (tmp_path / "trained.log").read_text().splitlines()]
    runs = [(fingerprint, seed) for fingerprint, seed, _ in trained]
    assert len(runs) == len(set(runs)) == 9, trained  # 1 seed genome + 2 candidates, 3 seeds each, once each
    assert len({pid for _, _, pid in trained}) == 2  # both workers trained
    result = run_confirm(load_experiment(path), log=lambda line: None, train=False)
    assert all(len(v) == 3 for v in result["runs"].values()) and len(result["runs"]) == 3


def test_the_confirmed_pareto_set_is_by_means_over_seeds_and_needs_two_runs():
    from nas.confirm import confirmed_pareto

    ap = {"seed": [0.40, 0.41, 0.42], "better": [0.50, 0.51, 0.52], "noisy_cheaper": [0.39, 0.45, 0.35],
          "worse_dearer": [0.30, 0.31, 0.32], "one_run": [0.9]}
    madds = {"seed": 10.0, "better": 12.0, "noisy_cheaper": 8.0, "worse_dearer": 11.0, "one_run": 1.0}
    objectives = {"AP": (1.0, ap), "multiply_adds": (-1.0, madds)}
    front = confirmed_pareto(list(ap), objectives)
    # worse_dearer: the seed is cheaper and better. noisy_cheaper: the cheapest, though its mean is below the
    # seed's (0.397 against 0.41), so neither dominates the other. one_run: no confirmed value, left out.
    assert front == ["seed", "better", "noisy_cheaper"]
    same_cost = {"AP": (1.0, ap), "multiply_adds": (-1.0, dict.fromkeys(madds, 10.0))}
    assert confirmed_pareto(list(ap), same_cost) == ["better"]  # one objective left that differs: the best mean


def test_a_two_objective_confirmation_reports_its_pareto_set(tmp_path, monkeypatch):
    path = _searched(tmp_path, monkeypatch, {"top_k": 2, "repeats": 2},
                     objectives=[{"AP": "maximize"}, {"multiply_adds": "minimize"}])
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(
        _genome_ap(genome, config["task"]["training"]["seed"])))
    result = run_confirm(load_experiment(path), log=lambda line: None)
    assert result["objectives"] == ["AP", "multiply_adds"] and result["pareto"]
    assert set(result["pareto"]) <= set(result["runs"])
    assert "confirmed Pareto set (AP vs multiply_adds" in format_verdict(result)


def test_the_report_shows_the_verdict_and_every_run_as_a_dot(tmp_path, monkeypatch, capsys):
    path = _searched(tmp_path, monkeypatch, {"top_k": 1, "repeats": 2})
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(
        _genome_ap(genome, config["task"]["training"]["seed"])))
    run_confirm(load_experiment(path), log=lambda line: None)
    out = tmp_path / "report"
    assert main(["report", path, "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "<h2>Confirmation</h2>" in page and "against seed.yaml" in page and 'src="verdict.png"' in page
    assert (out / "verdict.png").stat().st_size > 5000


def test_a_search_counts_its_budget_from_budget_start(tmp_path, monkeypatch):
    import time

    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"n_trials": 50}, confirm={"top_k": 1, "repeats": 2})
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(0.3))
    lines = []
    # 30 s of a 20 s budget went before this call (a parent's data and pre-screen): no trial starts, and the
    # stop line says why even though no trial was timed.
    study = run_search(load_experiment(path), timeout=20, budget_start=time.time() - 30, log=lines.append)
    assert [t.state.name for t in study.trials] == ["WAITING"]  # the seed genome, queued and never started
    assert any("the rest of the 20 s budget is the confirmation's (no search trial was timed" in line
               for line in lines), lines


def test_search_workers_count_the_budget_from_before_the_data_and_pre_screen(tmp_path, monkeypatch):
    import time

    import nas.search.driver
    import nas.workers

    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"n_trials": 4}, confirm={"top_k": 1, "repeats": 2})
    monkeypatch.setattr(nas.search.driver, "queue_first_trials", lambda *a, **k: time.sleep(1.0))
    started = {}

    def spawn(target, arguments, name, notes=(), log=print):
        started["at"], started["arguments"] = time.time(), arguments
        return [0 for _ in arguments]

    monkeypatch.setattr(nas.workers, "run_processes", spawn)
    called = time.time()
    assert nas.workers.run_workers(path, [], 2, timeout=600, log=lambda line: None) == [0, 0]
    budget_starts = [args[-1] for args in started["arguments"]]
    assert started["at"] - called >= 1.0  # the pre-screen's time passed before the workers started ...
    assert all(called <= begun < called + 0.5 for begun in budget_starts)  # ... and is counted in their budget
