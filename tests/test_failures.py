"""Failure paths as a user meets them: exit codes, a database restart, pruning through the pipe,
two objectives end to end, foreign studies, hostile flags and files, and no stray warnings."""

import json
import os
import subprocess
import sys
import time
import warnings

import optuna
import pytest
import yaml

import nas.search.driver
from nas.cli import build_parser, main
from nas.config import ConfigError
from nas.experiment import load_experiment
from nas.search.driver import SearchStopped, run_search
from nas.search.study import load_study
from nas.search.storage import redacted
from tests.postgres import throwaway_postgres
from tests.test_search import fake_metrics, fake_training, tiny_experiment


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ exit codes
def test_exit_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path)
    fake_training(monkeypatch, lambda *a, **k: fake_metrics(0.5))
    assert _cli(capsys, "search", path, "--workers", "1", "--n-trials", "2")[0] == 0

    def broken(*a, **k):
        from nas.trials import TrialFailed
        raise TrialFailed("RuntimeError: broken (at train.py:1)")

    fake_training(monkeypatch, broken)
    code, out, err = _cli(capsys, "search", path, "--workers", "1", "--n-trials", "9")
    assert code == 1 and "5 trials in a row failed" in out and "Traceback" not in out + err

    code, out, err = _cli(capsys, "search", path, "--set", "search.samplr=tpe")
    assert code == 2 and err.startswith("spinenas: error:") and "search.samplr" in err and "sampler" in err

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    fake_training(monkeypatch, interrupted)
    code, out, _ = _cli(capsys, "search", path, "--workers", "1", "--n-trials", "9")
    assert code == 130 and "run the same command again to resume" in out


@pytest.mark.parametrize("flags, message", [
    (["--n-trials", "0"], "--n-trials: expected a positive integer"),
    (["--n-trials", "-1"], "--n-trials: expected a positive integer"),
    (["--timeout", "-5"], "--timeout: expected a positive number"),
    (["--workers", "0"], "--workers: expected auto or a positive integer"),
    (["--workers", "many"], "--workers: expected auto or a positive integer"),
])
def test_budget_flags_obey_the_files_rules(tmp_path, capsys, flags, message):
    code, out, err = _cli(capsys, "search", tiny_experiment(tmp_path), *flags)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "study.db")


def test_every_infeasible_search_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fake_training(monkeypatch, lambda *a, **k: pytest.fail("an infeasible genome was trained"))
    monkeypatch.setattr(nas.search.driver, "MAX_CONSECUTIVE_INFEASIBLE", 10)  # not 100: the same path, 5x faster
    code, out, err = _cli(capsys, "search", tiny_experiment(tmp_path), "--workers", "1",
                           "--set", "search.constraints.max_params=1000")
    assert code == 1
    assert "the last 10 sampled genomes were all over the constraints" in out and "max_params=1000" in out
    assert "no feasible trial completed yet" not in err and "Traceback" not in out + err


# --------------------------------------------------------- the real database
# ``spinenas search`` with training faked (a pause, then an AP made from the genome), and every training
# recorded in trained.log. Its workers are spawned processes: each imports this file as its main module,
# so the fake reaches them too.
_FAKE_SEARCH = """
import os, sys, time
import nas.search.child

def train(self, genome, config, out_dir, report=None):
    time.sleep(1.5)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "trained.log"), "a") as log:
        log.write(f"{genome.fingerprint} {os.path.basename(out_dir)}\\n")
    ap = int(genome.fingerprint[:8], 16) / 16 ** 8
    return {"AP": ap, "AP50": ap, "AP75": ap, "APs": 0.0, "APm": 0.0, "APl": 0.0, "loss": 1.0,
            "timing": {"total": 1.5}, "history": []}

nas.search.child.TrialProcess.run = train
if __name__ == "__main__":
    from nas.cli import main
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_database_restart_under_three_workers_loses_nothing(tmp_path):
    # The server goes away for 10 s while three workers share the study, each mid-trial (their retries
    # back off 1, 2, 4, 8 s: the outage outlasts several).
    server = throwaway_postgres()
    with server as url:
        path = tiny_experiment(tmp_path, name="restart", search={"n_trials": 9, "storage": url})
        (tmp_path / "fake_search.py").write_text(_FAKE_SEARCH)
        log = open(tmp_path / "search.log", "w")
        search = subprocess.Popen([sys.executable, "fake_search.py", "search", path, "--workers", "3"],
                                  cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)

        def output():
            return (tmp_path / "search.log").read_text()

        try:
            deadline = time.monotonic() + 300
            finished, running = [], []
            while time.monotonic() < deadline and search.poll() is None:
                time.sleep(0.2)
                try:
                    trials = load_study(url, "restart").trials
                except Exception:
                    continue
                finished = [t for t in trials if t.state.name == "COMPLETE"]
                running = [t for t in trials if t.state.name == "RUNNING" and "fingerprint" in t.user_attrs]
                if finished and len(running) == 3:
                    break
            assert finished and len(running) == 3, output()
            before = {t.number: t.value for t in finished}
            server.stop()
            time.sleep(10)
            assert search.poll() is None, output()
            server.start()
            code = search.wait(timeout=400)
        finally:
            if search.poll() is None:
                search.kill()
            log.close()
        text = output()
        assert "unreachable" in text and "retrying in" in text, text
        trials = load_study(url, "restart").trials
        complete = {t.number: t.value for t in trials if t.state.name == "COMPLETE"}
        assert all(complete.get(n) == v for n, v in before.items()), text  # no finished trial lost
        assert len({t.number for t in trials}) == len(trials)
        trained = [line.split() for line in (tmp_path / "trained.log").read_text().splitlines()]
        fingerprints = [fingerprint for fingerprint, _ in trained]
        assert len(fingerprints) == len(set(fingerprints)), (trained, text)  # no genome trained twice
        # Every training's result reached the study, those that ended during the outage too.
        assert sorted(int(number) for _, number in trained) == sorted(complete), (trained, text)
        # Every worker rode the outage out (retries outlast a restart), saying so with lines naming the
        # storage and the database's own words, and no traceback.
        retries = [line for line in text.splitlines() if "unreachable" in line]
        assert all(f"storage {redacted(url)} unreachable (connection" in line for line in retries), text
        assert "] stopped:" not in text and "Traceback" not in text, text
        assert code == 0 and len(complete) == 9, text


# ------------------------------------------------------------------- pruning
def test_a_trained_trial_whose_result_write_is_lost_is_finished_not_trained_again(tmp_path, monkeypatch):
    # The database goes away just as Optuna writes a trained trial's values: the trial is finished from the values
    # it recorded, not failed and queued again (its genome trained a second time).
    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    monkeypatch.chdir(tmp_path)
    trained = []

    def train(genome, config, out_dir, report=None):
        trained.append(genome.fingerprint)
        return fake_metrics(int(genome.fingerprint[:8], 16) / 16 ** 8)

    fake_training(monkeypatch, train)
    real, lost = RDBStorage.set_trial_state_values, []

    def flaky(self, trial_id, state, values=None):
        if state == optuna.trial.TrialState.COMPLETE and not lost:
            lost.append(trial_id)
            try:
                raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("server closed the connection"))
            except sqlalchemy.exc.OperationalError as err:
                raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from err
        return real(self, trial_id, state, values)

    monkeypatch.setattr(RDBStorage, "set_trial_state_values", flaky)
    lines = []
    study = run_search(load_experiment(tiny_experiment(tmp_path), ["search.n_trials=3"]), log=lines.append)
    assert lost and len(trained) == len(set(trained)) == 3, (trained, lines)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * 3, (states, lines)
    first = study.trials[0]
    assert first.value == int(first.user_attrs["fingerprint"][:8], 16) / 16 ** 8
    assert any("unreachable (server closed the connection) during a trial" in line for line in lines), lines
    assert any(f"trial {first.number}: finished from its recorded result" in line for line in lines)


@pytest.mark.slow
def test_median_pruner_prunes_through_the_child_process(tmp_path, monkeypatch, warm_training):
    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"pruner": {"name": "median", "options": {"n_startup_trials": 1}}},
                           task={"training": {"epochs": 2, "warmup_steps": 2},
                                 "evaluation": {"batch_size": 32, "every_epoch": True}})
    experiment = load_experiment(path)
    from nas.search.study import open_study

    study = open_study(experiment)
    # A finished trial that was perfect at every step: the median any real trial is judged against.
    study.add_trial(optuna.trial.create_trial(value=1.0, intermediate_values={s: 1.0 for s in range(200)},
                                              user_attrs={"fingerprint": "reference"}))
    lines = []
    run_search(experiment, n_trials=2, timeout=1, log=lines.append)
    trained = load_study(experiment.storage_url, experiment.study_name).trials[1]
    assert trained.state.name == "PRUNED", lines
    assert trained.intermediate_values and max(trained.intermediate_values.values()) < 1.0
    assert any("PRUNED" in line for line in lines) and any("stopping: timeout" in line for line in lines)


# --------------------------------------------------------- two objectives
def test_two_objective_study_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    aps = iter([0.2, 0.5, 0.4, 0.6, 0.3, 0.45])
    fake_training(monkeypatch, lambda *a, **k: fake_metrics(next(aps)))
    path = tiny_experiment(tmp_path, search={"sampler": {"name": "nsga2"}, "n_trials": 5,
                                             "objectives": [{"AP": "maximize"}, {"multiply_adds": "minimize"}]})
    assert _cli(capsys, "search", path, "--workers", "1")[0] == 0
    code, out, _ = _cli(capsys, "results", path, "--top", "3", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 3 and set(rows[0]["values"]) == {"AP", "multiply_adds"}
    assert [r["values"]["AP"] for r in rows] == sorted((r["values"]["AP"] for r in rows), reverse=True)
    code, out, _ = _cli(capsys, "export", path, "--pareto", "--out", "front")
    assert code == 0
    study = load_study(f"sqlite:///{tmp_path}/study.db", "tiny")
    from nas.trials import best_trials

    front = best_trials(study)
    assert sorted(os.listdir("front")) == sorted(f"trial_{t.number:05d}" for t in front)
    assert _cli(capsys, "export", path, "--best", "--out", "best")[0] == 2  # several objectives: ask for --pareto
    assert _cli(capsys, "report", path, "--out", "report")[0] == 0
    page = open("report/index.html").read()
    assert "multiply-adds" in page and page.count("<th>multiply_adds</th>") == 0  # one cost column


# --------------------------------------------------- studies spinenas did not make
def test_foreign_study_is_refused_without_leftovers(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/foreign.db"
    study = optuna.create_study(storage=storage, study_name="foreign", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    code, _, err = _cli(capsys, "export", "--storage", storage, "--study-name", "foreign", "--best",
                        "--out", str(tmp_path / "out"))
    assert code == 2 and "recorded no genome" in err and not os.path.exists(tmp_path / "out")
    code, _, err = _cli(capsys, "report", "--storage", storage, "--study-name", "foreign",
                        "--out", str(tmp_path / "report"))
    assert code == 2 and "recorded no genome" in err and not os.path.exists(tmp_path / "report")
    code, out, _ = _cli(capsys, "results", "--storage", storage, "--study-name", "foreign")
    assert code == 0 and out.count("COMPLETE") == 3


@pytest.mark.parametrize("command", [["results"], ["export", "--best", "--out", "x"], ["report", "--out", "x"],
                                     ["draw", "--trial", "0", "-o", "x.png"]])
def test_read_only_commands_never_create_storage(tmp_path, capsys, command):
    storage = f"sqlite:///{tmp_path}/missing.db"
    code, _, err = _cli(capsys, command[0], "--storage", storage, "--study-name", "s", *command[1:])
    assert code == 2 and "no such file" in err
    assert not os.path.exists(tmp_path / "missing.db")


# ------------------------------------------------------------- hostile files
def test_yaml_with_duplicate_keys_or_alias_bombs_is_refused(tmp_path):
    path = tiny_experiment(tmp_path)
    text = open(path).read()
    with open(path, "w") as handle:
        handle.write(text + "search:\n  n_trials: 4\n")
    with pytest.raises(ConfigError, match=r"key 'search' appears twice \(lines \d+ and \d+\)"):
        load_experiment(path)
    bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefg", "bcdefgh"))
    with open(path, "w") as handle:
        handle.write(bomb)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert "aliases expand" in str(info.value) and len(str(info.value)) < 500


def test_long_values_are_cut_in_messages(tmp_path):
    path = tiny_experiment(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_experiment(path, [f"search.n_trials={'9' * 5000}x"])
    assert len(str(info.value)) < 400


# --------------------------------------------------------------- validate
@pytest.mark.parametrize("override, message", [
    ("search.sampler={name: tpe, options: {n_startup_trial: 3}}",
     "search.sampler.options: tpe does not accept these options (.*) \\(did you mean 'n_startup_trials'\\?\\)"),
    ("search.pruner={name: median, options: {n_warmup: 2}}",
     "search.pruner.options: median does not accept these options (.*) \\(did you mean 'n_warmup_steps'\\?\\)"),
    ("search.storage=postgres://db/x", "unknown scheme 'postgres'"),
    ("task.name=segmentation", "task.name: unknown task 'segmentation'"),
    ("task.name=no_such_package.tasks:mine",
     "task.name: task 'no_such_package.tasks:mine': cannot import module 'no_such_package.tasks'"),
    ("task.name=tests.postgres:mine", "task.name: task 'tests.postgres:mine': importing 'tests.postgres' registered "
                                      "no task 'mine'"),
])
def test_validate_builds_everything_a_search_would(tmp_path, capsys, override, message):
    path = tiny_experiment(tmp_path)
    code, out, err = _cli(capsys, "validate", path, "--set", override)
    assert code == 2 and __import__("re").search(message, err) and path in err, err
    assert not os.path.exists(tmp_path / "study.db")


# ------------------------------------------------------------------ help
def test_every_subcommand_and_option_has_help():
    parser = build_parser()
    missing = []

    def walk(p, prefix):
        for action in p._actions:
            if action.dest in ("help",):
                continue
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for name, sub in action.choices.items():
                    if not sub.description:
                        missing.append(f"{prefix} {name}: no description")
                    walk(sub, f"{prefix} {name}")
            elif not action.help:
                missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")

    walk(parser, "spinenas")
    assert not missing, missing


# --------------------------------------------------------------- warnings
def test_no_optuna_warnings_reach_the_user(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_training(monkeypatch, lambda *a, **k: fake_metrics(0.5))
    experiment = load_experiment(tiny_experiment(tmp_path), ["search.constraints.max_multiply_adds=1e12",
                                                             "search.sampler.name=tpe"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_search(experiment, n_trials=2, log=lambda line: None)
    optuna_warnings = [str(w.message) for w in caught if "optuna" in w.filename]
    assert not optuna_warnings, optuna_warnings
