"""Many workers on one study: PostgreSQL and journal storages, a SIGKILLed worker, bad storages."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

import nas.search.driver
import nas.search.storage
import tests.postgres
from tests import instant_task
from nas.cli import main
from nas.config import ConfigError
from nas.experiment import load_experiment
from nas.search.driver import run_search
from nas.search.storage import StorageError, open_storage
from nas.search.study import open_study
from nas.search.study import process_alive
from nas.cpu import ONEDNN, onednn_setting, onednn_settings, use_settings
from nas.workers import auto_workers, gpu_assignments, physical_memory, thread_settings, usable_cores
from tests.postgres import throwaway_postgres
from tests.test_search import _processes, _trainers, tiny_experiment


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server's URL, one for the run: tests/conftest.py starts some of its users early."""
    with throwaway_postgres() as url:
        yield url


_STORAGES = {}


def _trials(url, name):
    # One storage per URL: a new one per poll would leave a pool of connections open each time,
    # until the database refuses more clients and every poll fails.
    if url not in _STORAGES:
        _STORAGES[url] = open_storage(url)
    return optuna.load_study(study_name=name, storage=_STORAGES[url]).trials


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres", "journal"])
def test_three_workers_one_killed(backend, tmp_path, request):
    name = f"dist_{backend}"
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else f"journal://{tmp_path}/journal.log"
    # Three real worker processes, each with its training child; the training itself is tests/instant_task.py's.
    path = tiny_experiment(tmp_path, name=name, search={"n_trials": 4, "storage": url, "max_retries": 1},
                           task={"name": instant_task.NAME, "training": {"epochs": 3, "warmup_steps": 1}})
    command = [sys.executable, "-m", "nas.cli", "search", path, "--workers", "3"]
    log = open(tmp_path / "search.log", "w")
    search = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                              env=instant_task.instant_env())
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and search.poll() is None:
        time.sleep(0.5)
        try:
            trials = _trials(url, name)
        except Exception:
            continue
        # Mid-training: the genome is sampled and recorded, the child is training it. Only a trial started after
        # one ended: the first three start together and end together, so one of those may end before the kill lands.
        ended = [t.datetime_complete for t in trials if t.state.name == "COMPLETE"]
        running = [t for t in trials if t.state.name == "RUNNING" and "fingerprint" in t.user_attrs
                   and ended and t.datetime_start > min(ended)]
        if running:
            killed = running[0]
            os.kill(killed.user_attrs["worker"]["pid"], signal.SIGKILL)
    assert killed is not None, open(tmp_path / "search.log").read()
    assert search.wait(timeout=400) == 0, open(tmp_path / "search.log").read()

    trials = _trials(url, name)
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 4, states
    assert trials[killed.number].state.name == "FAIL"
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert all("genome" in t.user_attrs and "fingerprint" in t.user_attrs for t in trials if t.state.name == "COMPLETE")
    # The killed trial's genome was queued again with the same parameters (it runs unless the
    # study reached n_trials first, in which case it waits, holding them as fixed parameters).
    assert trials[killed.number].params
    retries = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert retries, states
    assert all((t.params or t.system_attrs.get("fixed_params")) == trials[killed.number].params for t in retries)

    # Resuming adds nothing: the study already has its 4 complete trials.
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env=instant_task.instant_env())
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(_trials(url, name)) == len(trials)


def test_unreachable_database_fails_fast_with_host_and_cause():
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"cannot open storage postgresql://\*\*\*@127\.0\.0\.1:9/db: .*refused"):
        open_storage("postgresql://user:secret@127.0.0.1:9/db")
    assert time.monotonic() - started < 10


def test_worker_cli_errors(tmp_path, capsys):
    path = tiny_experiment(tmp_path)
    assert main(["worker", path, "--storage", "postgresql://u@127.0.0.1:9/db", "--study-name", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "127.0.0.1:9" in err and "refused" in err
    storage = f"sqlite:///{tmp_path}/study.db"
    open_study(load_experiment(path))
    assert main(["worker", path, "--storage", storage, "--study-name", "tyni"]) == 2
    err = capsys.readouterr().err
    assert "no study 'tyni'" in err and "studies there: tiny" in err


def test_two_experiments_cannot_share_a_study(tmp_path):
    path = tiny_experiment(tmp_path)
    open_study(load_experiment(path))
    with pytest.raises(ConfigError, match="made by a different experiment"):
        open_study(load_experiment(path, ["search.sampler.name=tpe"]))


def test_lost_connection_is_retried_then_reported(tmp_path, monkeypatch):
    import sqlalchemy.exc

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(nas.search.storage.time, "sleep", lambda seconds: None)
    calls = []

    def unreachable(*args, **kwargs):
        # What Optuna 5 raises when the database goes away: its own error wrapping SQLAlchemy's.
        calls.append(1)
        try:
            raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))
        except sqlalchemy.exc.OperationalError as err:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from err

    monkeypatch.setattr(nas.search.driver, "_tidy_and_count", unreachable)
    lines = []
    # The giving up, which the real restart test (tests/test_failures.py) never reaches: it takes ~90 s.
    with pytest.raises(StorageError, match="lost the connection .* gave up after 8 attempts"):
        run_search(load_experiment(tiny_experiment(tmp_path)), log=lines.append)
    assert len(calls) == 8 and sum("retrying in" in line for line in lines) == 7
    assert "retrying in 30 s" in lines[-1] and "server closed the connection" in lines[-1]


def test_gpu_assignment():
    assert gpu_assignments(2, 2, available=4) == ["0,1", "2,3"]
    assert gpu_assignments(3, 2, available=4) == [None, None, None]  # too few: no pinning
    assert gpu_assignments(2, None, available=8) == [None, None]


def test_auto_workers_fill_the_cores_within_memory_and_trials_left():
    gib = 2**30
    assert auto_workers(50, gpus=0, cores=8, memory=64 * gib) == 8
    assert auto_workers(50, gpus=0, cores=8, memory=10 * gib) == 3  # 3 GiB a worker
    assert auto_workers(50, gpus=0, cores=2, memory=int(7.6 * gib)) == 2  # an "8 GB" laptop
    assert auto_workers(3, gpus=0, cores=8, memory=64 * gib) == 3  # no worker without a trial
    assert auto_workers(0, gpus=0, cores=8, memory=64 * gib) == 1  # a finished study: one process reports it
    assert auto_workers(50, gpus=0, cores=8, memory=2 * gib) == 1
    assert auto_workers(50, gpus=0, cores=8, memory=None) == 8
    assert auto_workers(50, gpus=2, cores=64, memory=None) == 1  # GPUs: as before (--gpus-per-worker spreads)


def test_thread_settings_share_the_cores_and_keep_the_users_own(monkeypatch):
    assert thread_settings(2, cores=8) == {"TF_NUM_INTRAOP_THREADS": "4", "TF_NUM_INTEROP_THREADS": "4"}
    assert thread_settings(3, cores=2) == {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    shares = [int(thread_settings(3, cores=8, index=i)["TF_NUM_INTRAOP_THREADS"]) for i in range(3)]
    assert shares == [3, 3, 2]  # no core left idle
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
    use_settings(thread_settings(2, cores=2))
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == "3" and os.environ["TF_NUM_INTEROP_THREADS"] == "1"


def test_onednn_is_on_for_every_command_unless_the_user_said_otherwise(tmp_path, monkeypatch):
    # TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import: the command line sets it before any command runs.
    missing = str(tmp_path / "missing.yaml")
    monkeypatch.delenv(ONEDNN, raising=False)
    assert main(["search", missing]) == 2
    assert os.environ.get(ONEDNN) == onednn_settings().get(ONEDNN)
    monkeypatch.setenv(ONEDNN, "0")  # the user's own choice stands
    assert main(["search", missing]) == 2
    assert os.environ[ONEDNN] == "0" and onednn_setting() is False
    for value, recorded in (("1", True), ("True", True), ("false", False)):  # what trials record
        monkeypatch.setenv(ONEDNN, value)
        assert onednn_setting() is recorded
    monkeypatch.delenv(ONEDNN)
    assert onednn_setting() is None
    assert onednn_settings("x86_64", "linux") == {ONEDNN: "1"} and onednn_settings("aarch64", "linux") == {}


def test_a_containers_limits_cap_cores_and_memory(tmp_path, monkeypatch):
    # Docker --cpus 1.5 --memory 6g: the host's cores and memory are not the search's.
    cpu, memory = tmp_path / "cpu.max", tmp_path / "memory.max"
    cpu.write_text("150000 100000\n")
    memory.write_text(f"{6 * 2**30}\n")
    monkeypatch.setattr("nas.workers.CGROUP_CPU", str(cpu))
    monkeypatch.setattr("nas.workers.CGROUP_MEMORY", str(memory))
    assert usable_cores() == 1 and physical_memory() == 6 * 2**30
    cpu.write_text("max 100000\n")
    memory.write_text("max\n")
    assert usable_cores() == len(os.sched_getaffinity(0)) and physical_memory() > 0


def test_auto_workers_count_the_trials_a_resumed_study_still_needs(tmp_path, monkeypatch):
    from nas.cli import build_parser
    from nas.commands.search import _trials_left

    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path)  # n_trials 3
    experiment = load_experiment(path)
    args = build_parser().parse_args(["search", path])
    assert args.workers == "auto"
    assert _trials_left(args, experiment, experiment.storage_url) == 3  # no study yet
    study = open_study(experiment)
    for value in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(value=value))
    assert _trials_left(args, experiment, experiment.storage_url) == 1
    assert _trials_left(build_parser().parse_args(["search", path, "--n-trials", "6"]), experiment,
                        experiment.storage_url) == 4


@pytest.mark.slow
def test_default_search_runs_one_single_threaded_worker_per_core(tiny_study):
    # --workers auto on a 2-core machine without GPUs: two workers, one TensorFlow thread each, and the
    # pre-screen (queued before the workers start) still decides the first trials. tiny_study (tests/conftest.py)
    # is that search: four trials, the seed, the pre-screened one and two sampled while the other worker trains.
    out = tiny_study.out
    assert tiny_study.code == 0, out
    assert "--workers auto: 2 workers side by side, 1 CPU thread each" in out
    assert out.count(", 1 CPU thread)") == 2, out
    assert "pre-screen: scoring 4 random genomes with -params" in out
    study = optuna.load_study(study_name="tiny", storage=tiny_study.storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    assert [t.user_attrs["cpu_threads"] for t in complete] == [1] * 4
    # oneDNN on x86-64 even where TensorFlow would leave it off (an AVX2-only CPU): the trials say which
    assert [t.user_attrs.get("onednn") for t in complete] == [True if onednn_settings() else None] * 4
    assert all(t.user_attrs["worker"]["pid"] != tiny_study.pid for t in complete)  # trained in the workers
    trained = [t.user_attrs["fingerprint"] for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(trained) == len(set(trained)), trained  # two workers, no genome trained twice (#32)
    assert study.user_attrs["prescreened"] and any("prescreen_rank" in t.user_attrs for t in study.trials)
    assert not tiny_study.threads_left  # the split is the workers' own, not the search process's


# ``spinenas search`` as on a 2-core machine with 16 GiB and no GPU (its workers see the real one), whose workers
# give up after 20 infeasible genomes in a row, not 100: each spawned worker imports this file as its main module.
_TWO_CORES = """
import sys
import nas.search.driver
import nas.workers

nas.search.driver.MAX_CONSECUTIVE_INFEASIBLE = 20
if __name__ == "__main__":
    nas.workers.usable_cores = lambda: 2
    nas.workers.gpu_count = lambda: 0
    nas.workers.physical_memory = lambda: 16 * 2**30
    from nas.cli import main
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_default_search_whose_workers_all_stop_says_why_and_exits_1(tmp_path):
    # Two workers (auto on a 2-core machine) that find no genome under the constraints: each says so, no
    # genome is trained, and the search exits 1 as one process would.
    path = tiny_experiment(tmp_path, search={"constraints": {"max_params": 1000}})
    (tmp_path / "two_cores.py").write_text(_TWO_CORES)
    search = subprocess.run([sys.executable, "two_cores.py", "search", path], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    out = search.stdout
    assert search.returncode == 1, out + search.stderr
    assert "--workers auto: 2 workers side by side" in out
    assert out.count("the last 20 sampled genomes were all over the constraints") >= 2, out
    assert "[worker 0] stopped" in out and "[worker 1] stopped" in out
    assert "every worker stopped with an error" in out
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/study.db")
    assert len(study.trials) == 40 and all(t.user_attrs.get("infeasible") for t in study.trials)  # none trained


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_a_killed_search_takes_its_workers_with_it(tmp_path):
    # Regression: SIGKILL on `spinenas search --workers 2` left both workers training on.
    # Trials that would run 5 minutes (tests/instant_task.py's training, in real training processes).
    path = tiny_experiment(tmp_path, task={"name": instant_task.NAME, "training": {"epochs": 200, "warmup_steps": 2}})
    search = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", path, "--workers", "2"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env=instant_task.instant_env())
    storage = f"sqlite:///{tmp_path}/study.db"
    deadline = time.monotonic() + 300
    workers = set()
    try:
        while len(workers) < 2 and time.monotonic() < deadline and search.poll() is None:
            time.sleep(0.5)
            try:
                trials = optuna.load_study(study_name="tiny", storage=storage).trials
            except Exception:
                continue
            workers = {t.user_attrs["worker"]["pid"] for t in trials
                       if t.state.name == "RUNNING" and "worker" in t.user_attrs}
        assert len(workers) == 2, "two workers never trained at once"
        while not all(_trainers(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert all(_trainers(pid) for pid in workers), "a worker never started its training process"
        search.kill()
        search.wait()
        deadline = time.monotonic() + 30
        while _processes(3, search.pid) and time.monotonic() < deadline:  # its session: workers, trainers
            time.sleep(0.5)
        assert not any(process_alive(pid) for pid in workers), "a worker outlived its search"
        assert not _processes(3, search.pid), "a training process outlived its worker"
    finally:
        if search.poll() is None:
            search.kill()
        for pid in _processes(3, search.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_mirrored_strategy_falls_back_on_cpu(tmp_path):
    from nas.experiment import load_train_config
    from nas.tasks.detection.train import train_and_evaluate
    from tests.test_detection import TINY_GENOME, small_settings

    config = load_train_config(None, small_settings(tmp_path, "task.training.epochs=1",
                                                    "task.training.strategy=mirrored"))
    metrics = train_and_evaluate(TINY_GENOME, config)
    assert metrics["steps"] == 2 and metrics["loss"] < 10


def test_orphan_is_failed_once_when_two_workers_see_it(tmp_path, monkeypatch):
    import socket

    from nas.search.study import fail_orphaned_trials

    monkeypatch.chdir(tmp_path)
    study = open_study(load_experiment(tiny_experiment(tmp_path)))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask({"x": optuna.distributions.IntDistribution(0, 3)})
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": dead.pid})
    assert fail_orphaned_trials(study, max_retries=1) == [trial.number]
    # A second worker acting on a snapshot taken before the first one failed the trial.
    stale = study._storage.get_trial(trial._trial_id)
    stale.state = optuna.trial.TrialState.RUNNING
    monkeypatch.setattr(study, "get_trials", lambda **kwargs: [stale])
    assert fail_orphaned_trials(study, max_retries=1) == []
    retries = [t for t in study._storage.get_all_trials(study._study_id) if t.user_attrs.get("retry_of") == trial.number]
    assert len(retries) == 1


def test_unreaped_killed_process_counts_as_dead():
    # Regression: a SIGKILLed worker not yet reaped by its parent (a zombie) still answers
    # kill(pid, 0), so its trial was never failed and the other workers waited forever.
    from nas.search.study import process_alive as _alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        # Killed, deliberately not reaped: wait until the kernel shows it as a zombie.
        deadline = time.monotonic() + 30
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the killed process never became a zombie"
            time.sleep(0.01)
        assert not _alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_table_creation_race_is_retried(monkeypatch):
    # The race below, made certain: the first attempt finds the tables being created by another worker.
    import sqlalchemy.exc

    real = optuna.storages.RDBStorage
    attempts = []

    def racing(*args, **kwargs):
        attempts.append(1)
        if len(attempts) == 1:
            raise sqlalchemy.exc.IntegrityError(
                "INSERT", {}, Exception('duplicate key value violates unique constraint "alembic_version_pkc"'))
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(nas.search.storage.time, "sleep", lambda seconds: None)
    assert open_storage("sqlite:///:memory:") is not None and len(attempts) == 2


def test_a_missing_postgres_server_fails_in_ci_and_skips_elsewhere(monkeypatch):
    # Every PostgreSQL test goes through this one guard: in CI a skip would hide that none of them ran.
    monkeypatch.setattr(tests.postgres, "server_binaries", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is missing in CI"):
        throwaway_postgres()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        throwaway_postgres()


def test_workers_opening_an_empty_database_together(tmp_path):
    # Regression: Optuna's table creation raced ("duplicate key ... alembic_version") when
    # several workers opened a fresh PostgreSQL database at the same moment.
    with throwaway_postgres() as url:
        code = f"from nas.search.storage import open_storage; open_storage({url!r}); print('ok')"
        workers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for _ in range(5)]
        results = [w.communicate(timeout=120) for w in workers]
        assert all(w.returncode == 0 for w in workers), [err[-300:] for _, err in results]


_CLAIM_ALL = """
import sys
import optuna
from optuna.trial import TrialState
from nas.search.storage import open_storage
study = optuna.load_study(study_name="queue", storage=open_storage(sys.argv[1]))
won = []
while True:
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if not waiting:
        break
    for trial in waiting:
        if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
            won.append(trial.number)
            break
print(" ".join(map(str, won)))
"""


@pytest.mark.parametrize("backend", ["sqlite", "journal", "postgres"])
def test_each_queued_trial_is_claimed_by_one_worker(backend, tmp_path, request):
    # Regression: on SQLite two workers both read a queued trial as WAITING and both moved it
    # to RUNNING (sqlite3 took the write lock only at the UPDATE), so both trained it into one
    # folder; study.ask and the fidelity workers claim this way. 60 trials, 4 workers: the old
    # code claimed 19-24 of them twice in every run tried.
    url = {"sqlite": f"sqlite:///{tmp_path}/study.db", "journal": f"journal://{tmp_path}/study.log"}.get(backend)
    url = url or request.getfixturevalue("postgres_url")
    study = optuna.create_study(study_name="queue", storage=open_storage(url), load_if_exists=True)
    for x in range(60):
        study.enqueue_trial({"x": x}, skip_if_exists=False)
    workers = [subprocess.Popen([sys.executable, "-c", _CLAIM_ALL, url], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-300:] for _, err in results]
    claims = sorted(int(n) for out, _ in results for n in out.split())
    assert claims == list(range(60))
