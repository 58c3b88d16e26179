"""Searches from experiment files: validation, studies on SQLite, isolation, resume, results and export."""

import json
import re
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

import nas.search.child
import nas.search.driver
from nas.cli import main
from nas.config import ConfigError
from nas.experiment import load_experiment
from nas.search.child import train_in_child
from nas.search.driver import SearchStopped, run_search
from nas.search.study import load_study, open_study
from nas.trials import TrialFailed
from search_spaces.genome import Genome
from tests.test_detection import TINY_GENOME
from tests import instant_task

EXPERIMENTS = sorted(f for f in os.listdir(os.path.join(instant_task.ROOT, "experiments")) if f.endswith(".yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_shipped_experiments_validate(name, capsys):
    path = os.path.join("experiments", name)
    if name == "proxy_shapes.yaml":  # a train config, not a search: it must load as one
        from nas.experiment import load_train_config

        config = load_train_config(path)
        assert config.task.name == "detection" and config.task.data.image_size == 128
        return
    assert main(["validate", path]) == 0
    assert "valid" in capsys.readouterr().out


def tiny_experiment(tmp_path, name="tiny", **sections):
    """A search over levels 3-5 at 64x64 whose trials train in a few seconds."""
    seed = tmp_path / "seed.yaml"
    TINY_GENOME.save(seed)
    data = {
        "name": name, "seed": 0,
        "search_space": {"min_level": 3, "max_level": 5, "intermediate_levels": [2, 3, 4], "level_offsets": [0, 1],
                         "parent_window": 3, "seed_genomes": ["seed.yaml"]},
        "model": {"endpoints_num_filters": 16},
        "task": {"data": {"root": str(tmp_path.parent / "shapes64"), "image_size": 64,
                          "generate_shapes": {"train": 96, "val": 32, "seed": 0}},
                 "head": {"num_filters": 16, "num_convs": 1},
                 "training": {"epochs": 1, "warmup_steps": 2},
                 "evaluation": {"batch_size": 32}},
        "search": {"sampler": {"name": "random"}, "n_trials": 3,
                   "storage": f"sqlite:///{tmp_path}/study.db"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("edit, message", [
    ({"search": {"samplr": "tpe"}}, r"search.samplr: unknown key \(did you mean 'sampler'\?\)"),
    ({"search": {"n_trials": "ten"}}, r"search.n_trials: expected an integer, got 'ten'"),
    ({"search": {"objectives": [{"mAP": "maximize"}]}}, r"unknown metric 'mAP' \(did you mean 'AP'\?\)"),
    ({"search": {"objectives": [{"AP": "up"}]}}, "direction must be maximize or minimize"),
    ({"task": {"training": {"epochs": 0}}}, "task.training.epochs: must be positive"),
    ({"search_space": {"parent_window": 1}}, "parent_window must be at least 2"),
    ({"search_space": {"seed_genomes": ["nope.yaml"]}}, "seed_genomes: 'nope.yaml' is neither a reference genome"),
    ({"model": {"filter_size_scale": "big"}}, "model.filter_size_scale: expected a number"),
])
def test_bad_experiments_name_file_and_key(tmp_path, edit, message):
    path = tiny_experiment(tmp_path)
    data = yaml.safe_load(open(path))
    for section, values in edit.items():
        data.setdefault(section, {}).update(values)
    open(path, "w").write(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment(path)
    assert str(info.value).startswith(path)


@pytest.mark.parametrize("edit, message", [
    ({"sampler": {"name": "annealing"}}, r"search.sampler.name: unknown sampler 'annealing'"),
    ({"pruner": {"name": "medain"}}, r"search.pruner.name: unknown pruner 'medain' \(did you mean 'median'\?\)"),
    ({"screening": {"proxy": "synflw"}}, r"search.screening.proxy: .*synflw"),
])
def test_strategy_names_are_checked_where_they_are_built(tmp_path, capsys, edit, message):
    # The schema imports no sampler, pruner or proxy code; their registries answer, before any data or study exists.
    path = tiny_experiment(tmp_path, search=edit)
    experiment = load_experiment(path)
    with pytest.raises(ConfigError, match=message):
        run_search(experiment, log=lambda line: None)
    assert not (tmp_path / "study.db").exists()
    assert main(["validate", path]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_overrides_are_validated_and_applied(tmp_path, capsys):
    path = tiny_experiment(tmp_path)
    assert load_experiment(path, ["search.n_trials=7"]).search.n_trials == 7
    assert main(["validate", path, "--set", "search.n_trails=7"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "search.n_trails: unknown key (did you mean 'n_trials'?)" in err


def test_yaml_is_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_experiment(str(path))


def completed(study):
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


@pytest.mark.slow
def test_end_to_end_search_resume_results_and_export(tiny_study, tmp_path, capsys, monkeypatch):
    # tiny_study (tests/conftest.py) is `spinenas search` of the tiny experiment, its 4 trials trained for real.
    assert tiny_study.code == 0, tiny_study.out
    assert "best trial:" in tiny_study.out and "best genome:" in tiny_study.out
    path = tiny_study.path
    study = open_study(load_experiment(path), create=False)
    done = completed(study)
    assert len(done) == 4
    # Nothing else: every other trial is one a second worker started past n_trials and cancelled untrained.
    assert all(t.user_attrs.get("cancelled") for t in study.trials if t not in done)
    assert done[0].user_attrs["fingerprint"] == TINY_GENOME.fingerprint  # the seed ran first
    for trial in done:
        attrs = trial.user_attrs
        assert Genome.from_yaml(attrs["genome"]).fingerprint == attrs["fingerprint"]
        assert attrs["params"] > 0 and attrs["multiply_adds"] > 0 and attrs["versions"]["optuna"]
        assert attrs["seed"] == trial.number and 0 <= trial.value <= 1
        runs = tiny_study.directory / "runs" / "tiny"
        assert os.path.exists(runs / "trials" / f"{trial.number:05d}" / "metrics.json")
    trained = [t for t in done if "duplicate_of" not in t.user_attrs]
    assert len(os.listdir(tiny_study.directory / "runs" / "tiny" / "artifacts")) == len(trained)

    # What writes works on a copy of the study, so other readers of it see it as the search left it.
    monkeypatch.chdir(tmp_path)
    storage = ["--storage", tiny_study.copy_storage(tmp_path)]
    # Running again finds n_trials complete and repeats nothing.
    assert main(["search", path, *storage]) == 0
    capsys.readouterr()
    assert load_study(storage[1], "tiny").trials == study.trials

    assert main(["results", path, *storage, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in rows] == [t.state.name for t in study.trials]
    assert [r["state"] for r in rows].count("COMPLETE") == 4 and all(r["fingerprint"] for r in rows)

    export = tmp_path / "exported"
    assert main(["export", path, *storage, "--best", "--out", str(export), "--model-id-scaling", "49S"]) == 0
    capsys.readouterr()
    genome = Genome.load(export / "genome.yaml")
    namespace = {}
    exec((export / "block_specs.py").read_text(), namespace)
    assert namespace["BLOCK_SPECS"] == genome.to_block_specs()
    assert (export / "backbone_49S.keras").stat().st_size > 0
    assert main(["decode", "--genome", str(export / "genome.yaml"), "--input-size", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] == genome.fingerprint

    # A different experiment may not take over the study.
    with pytest.raises(ConfigError, match="made by a different experiment"):
        open_study(load_experiment(path, ["task.training.epochs=2"]), storage_url=storage[1])
    assert main(["results", *storage, "--study-name", "nope"]) == 2
    assert "studies there: tiny" in capsys.readouterr().err


def fake_training(monkeypatch, train):
    """Replace training in the child process by ``train(genome, config, out_dir, report)``."""
    monkeypatch.setattr(nas.search.child.TrialProcess, "run", lambda self, *args, **kwargs: train(*args, **kwargs))


def fake_metrics(ap):
    return {"AP": ap, "AP50": ap, "AP75": ap, "APs": 0.0, "APm": 0.0, "APl": 0.0, "loss": 1.0,
            "timing": {"total": 1.0}, "history": []}


def test_failing_trials_fail_alone_and_duplicates_are_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcomes = iter([TrialFailed("ValueError: boom (at train.py:1)"), TrialFailed("diverged: loss became nan"),
                     fake_metrics(0.3), fake_metrics(0.4)])

    def fake_train(genome, config, out_dir, report=None):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    fake_training(monkeypatch, fake_train)
    experiment = load_experiment(tiny_experiment(tmp_path), ["search.n_trials=2"])
    study = run_search(experiment, log=lambda line: None)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[0].user_attrs["fail_reason"].startswith("ValueError: boom")
    assert "diverged" in study.trials[1].user_attrs["fail_reason"]

    # The same genome again is not trained: its result is reused.
    study.enqueue_trial(study.trials[2].params)
    study = run_search(experiment, n_trials=3, log=lambda line: None)
    assert study.trials[-1].user_attrs["duplicate_of"] == 2 and study.trials[-1].value == 0.3


def test_constraint_breaking_genomes_are_infeasible_and_untrained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_training(monkeypatch, lambda *a, **k: pytest.fail("infeasible genome trained"))
    # 20 genomes in a row, not the 100 a search gives up after: TPE models the last 10 (past its 10 random
    # startup trials), and the test takes 4 s instead of 13-31 s.
    monkeypatch.setattr(nas.search.driver, "MAX_CONSECUTIVE_INFEASIBLE", 20)
    experiment = load_experiment(tiny_experiment(tmp_path), ["search.constraints.max_params=1000",
                                                             "search.sampler.name=tpe"])
    lines = []
    with pytest.raises(SearchStopped, match="last 20 sampled genomes were all over the constraints .*max_params=1000"):
        run_search(experiment, n_trials=2, log=lines.append)
    study = load_study(experiment.storage_url, experiment.study_name)
    # One path for over-budget genomes: recorded with their cost, PRUNED, never trained.
    assert len(study.trials) == 20
    assert all(t.state.name == "PRUNED" and t.user_attrs["infeasible"] and t.user_attrs["constraints"][0] > 0
               and t.user_attrs["params"] > 1000 and "genome" in t.user_attrs for t in study.trials)


def test_consecutive_failures_stop_the_search(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def always_fails(*args, **kwargs):
        raise TrialFailed("broken")

    fake_training(monkeypatch, always_fails)
    with pytest.raises(TrialFailed, match="5 trials in a row failed; the last because: broken"):
        run_search(load_experiment(tiny_experiment(tmp_path)), log=lambda line: None)


@pytest.mark.slow
def test_child_process_failures_are_reported(tmp_path):
    from nas.config import to_data
    from nas.experiment import load_train_config

    base = ["task.data.image_size=64", f"task.data.root={tmp_path}/shapes64",
            "task.data.generate_shapes={train: 32, val: 16, seed: 0}", "task.training.epochs=1",
            "task.head.num_filters=16", "model.endpoints_num_filters=16"]
    nan = to_data(load_train_config(None, base + ["task.training.learning_rate=1e12",
                                                  "task.training.gradient_clip_norm=null",
                                                  "task.training.warmup_steps=0", "task.training.batch_size=4",
                                                  "task.training.epochs=3"]))
    with pytest.raises(TrialFailed, match="diverged: loss became"):
        train_in_child(TINY_GENOME, nan, str(tmp_path / "nan"))

    missing = to_data(load_train_config(None, base + ["task.data.generate_shapes=null",
                                                      f"task.data.root={tmp_path}/empty"]))
    with pytest.raises(TrialFailed, match="DataError: .*cannot read annotations"):
        train_in_child(TINY_GENOME, missing, str(tmp_path / "missing"))
    # A child killed mid-trial: test_a_killed_warm_child_fails_only_its_trial, which kills one.


@pytest.mark.slow
def test_sigkilled_search_resumes_without_losing_trials(tmp_path):
    # Two trials: killed in the second, the resumed search trains one more. A real search and training process,
    # whose training is tests/instant_task.py's (4.5 s a trial).
    path = tiny_experiment(tmp_path, task={"name": instant_task.NAME, "training": {"epochs": 3, "warmup_steps": 2}},
                           search={"n_trials": 2})
    command = [sys.executable, "-m", "nas.cli", "search", path, "--workers", "1"]
    process = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, env=instant_task.instant_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = f"sqlite:///{tmp_path}/study.db"
    deadline = time.monotonic() + 480  # a loaded 2-core machine took over 240 s to start the search
    states = []  # what the study showed last, for the failure message
    try:
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                trials = optuna.load_study(study_name="tiny", storage=storage).trials
            except Exception:
                continue
            states = [t.state.name for t in trials]
            if "COMPLETE" in states and states[-1] == "RUNNING":
                break
        else:
            pytest.fail(f"search never reached a running second trial in 480 s: {states or 'no study yet'}")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    before = {t.number: t.value for t in optuna.load_study(study_name="tiny", storage=storage).trials
              if t.state.name == "COMPLETE"}
    killed = max(t.number for t in optuna.load_study(study_name="tiny", storage=storage).trials)

    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                             env=instant_task.instant_env())
    assert resumed.returncode == 0, resumed.stderr
    assert f"marked trial(s) [{killed}] failed" in resumed.stdout
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(completed(study)) == 2 and len(before) == 1
    assert study.trials[killed].state.name == "FAIL"
    assert "died during the trial" in study.trials[killed].user_attrs["fail_reason"]
    assert {t.number: t.value for t in completed(study) if t.number in before} == before
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))


def test_a_study_from_before_the_task_seam_opens_and_resumes(tmp_path, monkeypatch, capsys):
    # tests/data/study_1e9f694 was written by spinenas at commit 1e9f694 (3 complete trials).
    import shutil

    shutil.copytree(os.path.join(os.path.dirname(__file__), "data", "study_1e9f694"), tmp_path / "old")
    monkeypatch.chdir(tmp_path / "old")
    aps = iter([0.6, 0.7, 0.8, 0.9])
    fake_training(monkeypatch, lambda *a, **k: fake_metrics(next(aps)))
    # Made before mixed precision existed: it resumes as it was made (float32), and only so.
    with pytest.raises(ConfigError, match="to resume it as it was made: --set task.training.precision=float32"):
        run_search(load_experiment("experiment.yaml"), storage_url="sqlite:///study.db", log=lambda line: None)
    experiment = load_experiment("experiment.yaml", ["task.training.precision=float32"])
    study = run_search(experiment, n_trials=5, storage_url="sqlite:///study.db", log=lambda line: None)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert [t.value for t in complete[:3]] == [0.31, 0.42, 0.27] and len(complete) == 5
    assert all("genome" in t.user_attrs for t in study.trials)
    args = ["experiment.yaml", "--storage", "sqlite:///study.db"]
    capsys.readouterr()
    assert main(["results", *args, "--top", "2", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)
    assert [r["values"]["AP"] for r in top] == sorted((t.value for t in complete), reverse=True)[:2]
    assert main(["export", *args, "--best", "--out", "best"]) == 0
    assert Genome.load("best/genome.yaml").fingerprint == max(complete, key=lambda t: t.value).user_attrs["fingerprint"]
    assert main(["report", *args, "--out", "report"]) == 0
    assert os.path.exists("report/index.html")


def test_settings_added_later_keep_old_studies_open(tmp_path):
    from nas.experiment.fingerprint import digest, meaning

    experiment = load_experiment(tiny_experiment(tmp_path))
    # A study made before task.training.jit_compile existed stored data without it.
    old = experiment.to_data()
    del old["task"]["training"]["jit_compile"]
    old_fingerprint = digest(meaning(old))
    assert old_fingerprint != experiment.fingerprint
    assert experiment.matches(old_fingerprint, old)  # the new setting is at its default
    changed = load_experiment(tiny_experiment(tmp_path), ["task.training.jit_compile=true"])
    assert not changed.matches(old_fingerprint, old)
    assert not load_experiment(tiny_experiment(tmp_path), ["task.training.epochs=2"]).matches(old_fingerprint, old)


def tiny_trial_config(tmp_path, *extra):
    """Smallest useful trial: 64x64, 16 images, one epoch of one step, 8-wide head."""
    from nas.config import to_data
    from nas.experiment import load_train_config

    return to_data(load_train_config(None, [
        "task.data.image_size=64", f"task.data.root={tmp_path}/shapes64",
        "task.data.generate_shapes={train: 16, val: 8, seed: 0}", "task.training.epochs=1",
        "task.training.batch_size=16", "task.head.num_filters=8", "task.head.num_convs=1",
        "model.endpoints_num_filters=8", "task.evaluation.batch_size=8", *extra]))


@pytest.mark.slow
def test_a_killed_warm_child_fails_only_its_trial(tmp_path, warm_training):
    # warm_training (tests/conftest.py) is this pytest worker's TrialProcess, perhaps warm from other tests already.
    # Its trials here are tests/instant_task.py's: what is under test is the process, not the training in it.
    process = warm_training
    config = tiny_trial_config(tmp_path, f"task.name={instant_task.NAME}")
    killed = tiny_trial_config(tmp_path, f"task.name={instant_task.NAME}", "task.training.epochs=2",
                               "task.evaluation.every_epoch=true")
    assert "AP" in process.run(TINY_GENOME, config, str(tmp_path / "before"))
    warm, started = process.pid, process.started

    def kill_child(step, metrics):
        os.kill(process.pid, signal.SIGKILL)
        return True

    with pytest.raises(TrialFailed, match="killed by SIGKILL; killed, perhaps out of memory"):
        process.run(TINY_GENOME, killed, str(tmp_path / "killed"), report=kill_child)
    assert process.pid is None
    assert "AP" in process.run(TINY_GENOME, config, str(tmp_path / "after"))  # in a new child
    assert process.started == started + 1 and process.pid != warm


def _gone(pid: int) -> bool:
    """True when process ``pid`` has exited (a zombie nobody reaps counts as exited)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in handle)
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_a_killed_worker_leaves_no_training_child(tmp_path):
    # Regression: a worker killed by a signal left its warm child training the orphaned trial to the
    # end (minutes of CPU on a shared machine), though the trial was failed and requeued.
    config = tiny_trial_config(tmp_path, "task.training.epochs=100000")
    script = tmp_path / "worker.py"
    script.write_text(
        "import json, sys\n"
        "from nas.search.child import TrialProcess\n"
        "from search_spaces.genome import Genome\n"
        "if __name__ == '__main__':\n"
        "    process = TrialProcess()\n"
        "    process._start()\n"
        "    print(process.pid, flush=True)\n"
        "    process.run(Genome.from_dict(json.loads(sys.argv[1])), json.loads(sys.argv[2]), sys.argv[3])\n")
    worker = subprocess.Popen([sys.executable, str(script), json.dumps(TINY_GENOME.to_dict()), json.dumps(config),
                               str(tmp_path / "run")], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = int(worker.stdout.readline())
    try:
        time.sleep(3)  # the child is importing, building or training: busy, not reading its pipe
        assert not _gone(child)
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 30
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone(child), "the trial process kept running after its worker was killed"
    finally:
        if not _gone(child):
            os.kill(child, signal.SIGKILL)


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, pgrp, session, ...); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _processes(field: int, value: int) -> list[int]:
    """Live process ids whose stat ``field`` (1 parent, 3 session) is ``value`` (Linux /proc)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat(int(entry))
        if fields and fields[0] != "Z" and int(fields[field]) == value:
            found.append(int(entry))
    return found


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid``."""
    return _processes(1, pid)


def _trainers(pid: int) -> list[int]:
    """``pid``'s training processes: children multiprocessing spawned (not its resource tracker)."""
    found = []
    for child in _children(pid):
        try:
            with open(f"/proc/{child}/cmdline") as handle:
                if "spawn_main" in handle.read():
                    found.append(child)
        except OSError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_sigterm_stops_a_search_like_ctrl_c(tmp_path):
    # Batch schedulers send SIGTERM before SIGKILL. Regression: it killed the search outright, leaving
    # its trial RUNNING (only a later start on the same host failed it) and its training child alive.
    # A trial that would run 5 minutes (tests/instant_task.py's training, in a real training process).
    path = tiny_experiment(tmp_path, task={"name": instant_task.NAME, "training": {"epochs": 200, "warmup_steps": 2}})
    process = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", path, "--workers", "1"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=instant_task.instant_env())
    storage = f"sqlite:///{tmp_path}/study.db"
    deadline = time.monotonic() + 300
    running = None
    try:
        while running is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            try:
                trials = optuna.load_study(study_name="tiny", storage=storage).trials
            except Exception:
                continue
            running = next((t for t in trials if t.state.name == "RUNNING" and "fingerprint" in t.user_attrs), None)
        assert running is not None, process.stdout.read() if process.poll() is not None else "no running trial"
        children = []  # the training process (spawned by multiprocessing; other children filter logs)
        while not children and time.monotonic() < deadline:
            time.sleep(0.5)
            children = _trainers(process.pid)
        assert children, "no training process started"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output
    assert "interrupted: finished trials are stored" in output and "Traceback" not in output
    trial = optuna.load_study(study_name="tiny", storage=storage).trials[running.number]
    assert trial.state.name == "FAIL"
    assert children and all(_gone(pid) for pid in children)
