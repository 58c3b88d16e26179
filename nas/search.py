"""Run an experiment as an Optuna study: sample genomes, train each in a child process, record everything.

The parent process never imports TensorFlow: it samples, costs and records,
and each trial trains in a fresh spawned process, so memory cannot pile up
over hundreds of trials and a crash, an out-of-memory kill or a NaN loss
fails that trial alone.

Example:
    >>> from nas.experiment import load_experiment
    >>> from nas.search import run_search
    >>> study = run_search(load_experiment("experiments/quickstart.yaml"))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import signal
import socket
import time
import traceback
import warnings
from typing import Callable, Optional

import optuna
from optuna.trial import TrialState

from nas.config import ConfigError, to_data
from nas.experiment import COST_METRICS, Experiment, PrunerConfig, SamplerConfig
from nas.samplers.evolution import RegularizedEvolutionSampler
from search_spaces.genome import Genome
from search_spaces.space import ScalePermutedSpace
from spinenet.cost import CostBudget, network_cost

EXPERIMENT_KEY = "experiment_fingerprint"
MAX_CONSECUTIVE_FAILURES = 5


class TrialFailed(Exception):
    """A trial that could not produce metrics; the reason is stored as its ``fail_reason`` attribute."""


class StorageError(ConnectionError):
    """A study storage that cannot be reached or opened."""


# --------------------------------------------------------------- components
def make_sampler(config: SamplerConfig, space: ScalePermutedSpace, seed: int, constrained: bool):
    """The Optuna sampler an experiment names, seeded, with constraints wired in where supported."""
    options = dict(config.options)
    options.setdefault("seed", seed)
    constraints = {"constraints_func": _constraint_values} if constrained else {}
    factories: dict[str, Callable] = {
        "tpe": lambda: optuna.samplers.TPESampler(**constraints, **options),
        "random": lambda: optuna.samplers.RandomSampler(**options),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(**constraints, **options),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(**options),
        "gp": lambda: _gp_sampler(constraints, options),
        "evolution": lambda: RegularizedEvolutionSampler(space, **options),
    }
    try:
        return factories[config.name]()
    except TypeError as err:
        raise ConfigError(f"search.sampler.options: {config.name} does not accept these options ({err})") from None


def _gp_sampler(constraints, options):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError("search.sampler: gp needs PyTorch; pip install 'spinenas[gp]'") from None
    return optuna.samplers.GPSampler(**constraints, **options)


def _constraint_values(trial) -> list[float]:
    return trial.user_attrs.get("constraints", [0.0])


def make_pruner(config: PrunerConfig):
    """The Optuna pruner an experiment names."""
    factories = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }
    try:
        return factories[config.name](**config.options)
    except TypeError as err:
        raise ConfigError(f"search.pruner.options: {config.name} does not accept these options ({err})") from None


def open_storage(url: str, heartbeat_interval: int = 30, max_retries: int = 1):
    """An Optuna storage for ``url``: SQLite, PostgreSQL or MySQL (RDB), or ``journal:///path``.

    RDB storages get heartbeats, so a trial whose worker died is marked FAIL
    and (up to ``max_retries`` times) re-queued with the same parameters.
    """
    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal://"):]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    # Optuna 4.9 renamed the retry callback; keep working on both sides of the rename.
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=heartbeat_interval,
                    grace_period=3 * heartbeat_interval, heartbeat_stale_trial_callback=retry(max_retry=max_retries))
            break
        except Exception as err:  # SQLAlchemy and the drivers raise many kinds; all mean "cannot open".
            if _created_concurrently(err) and attempt < 2:
                time.sleep(1)  # another worker is creating the same tables on an empty database
                continue
            _raise_storage_error(url, err)
    if url.startswith("sqlite"):
        _use_wal(storage)
    return storage


def _created_concurrently(err: Exception) -> bool:
    text = _cause(err).lower()
    return "already exists" in text or "duplicate key" in text


def _raise_storage_error(url: str, err: Exception):
    cause = _cause(err)
    if "Failed to import DB access module" in cause:
        extra = "postgres" if url.startswith("postgresql") else "mysql" if url.startswith("mysql") else None
        cause = f"no database driver installed for it; pip install 'spinenas[{extra}]'" if extra else cause
    raise StorageError(f"cannot open storage {_redacted(url)}: {cause}") from None


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # Several local workers share the file: wait for the lock instead of failing.
        return {"connect_args": {"timeout": 300}}
    if url.startswith("postgresql"):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
    if url.startswith("mysql"):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
    return {"pool_pre_ping": True}


def _use_wal(storage) -> None:
    """Write-ahead logging: readers never block the writer, so concurrent workers do not lock each other out."""
    import sqlalchemy

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _on_connect(connection, _record):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=300000")
        cursor.close()

    storage.engine.dispose()  # reconnect so every pooled connection gets the pragmas


def _cause(err: Exception) -> str:
    """The driver's own words, without SQLAlchemy's boilerplate."""
    text = str(getattr(err, "orig", None) or err)
    text = text.split("(Background on this error")[0]
    return " ".join(text.split())[:300]


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def open_study(experiment: Experiment, storage_url: Optional[str] = None, study_name: Optional[str] = None,
               create: bool = True) -> optuna.Study:
    """Create or resume the experiment's study, refusing one made by a different experiment."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url or experiment.storage_url
    name = study_name or experiment.study_name
    storage = open_storage(url, experiment.search.heartbeat_interval, experiment.search.max_retries)
    space = experiment.search_space.build()
    constrained = any(v is not None for v in (experiment.search.constraints.max_params,
                                               experiment.search.constraints.max_multiply_adds))
    sampler = make_sampler(experiment.search.sampler, space, experiment.seed, constrained)
    pruner = make_pruner(experiment.search.pruner)
    if not create and name not in [s.study_name for s in optuna.get_all_study_summaries(storage)]:
        raise ConfigError(_missing_study(storage, name, url))
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                                directions=experiment.search.directions, load_if_exists=True)
    stored = study.user_attrs.get(EXPERIMENT_KEY)
    if stored is None:
        study.set_user_attr(EXPERIMENT_KEY, experiment.fingerprint)
        study.set_user_attr("experiment", experiment.to_data())
        study.set_user_attr("metrics", experiment.search.metric_names)
    elif stored != experiment.fingerprint:
        raise ConfigError(
            f"study {name!r} in {_redacted(url)} was made by a different experiment (fingerprint {stored}, "
            f"this file {experiment.fingerprint}); pick another --study-name or storage")
    return study


def _missing_study(storage, name: str, url: str) -> str:
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    return f"no study {name!r} in {_redacted(url)}; studies there: {', '.join(names) or 'none'}"


def fail_orphaned_trials(study: optuna.Study, max_retries: int = 0) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker process on this host is gone (e.g. SIGKILLed).

    Each is queued again with the same parameters, up to ``max_retries`` times per genome.
    """
    failed = []
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        if worker.get("host") == host and worker.get("pid") and not _alive(worker["pid"]):
            try:
                study._storage.set_trial_user_attr(trial._trial_id, "fail_reason",
                                                   f"worker process {worker['pid']} died during the trial")
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker marked it first (and queued the retry)
            failed.append(trial.number)
            retries = trial.user_attrs.get("retries", 0)
            if retries < max_retries and trial.params:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retries": retries + 1})
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process its parent has not reaped yet still answers signals: read its state.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def enqueue_seeds(study: optuna.Study, space: ScalePermutedSpace, genomes: list[Genome]) -> int:
    """Queue the seed genomes once per study; returns how many were queued now."""
    if study.user_attrs.get("seeds_enqueued"):
        return 0
    for genome in genomes:
        study.enqueue_trial(space.encode(genome), user_attrs={"seed_genome": genome.fingerprint})
    study.set_user_attr("seeds_enqueued", True)
    return len(genomes)


def package_versions() -> dict:
    """Versions that decide what a trial's numbers mean."""
    versions = {"python": platform.python_version()}
    for package in ("spinenas", "tensorflow", "tf-keras", "optuna"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


# ------------------------------------------------------------------ trials
class Objective:
    """The study's objective: sample, cost, deduplicate, then train in a child process."""

    def __init__(self, experiment: Experiment, space: ScalePermutedSpace, log: Callable[[str], None] = print,
                 target: Optional[int] = None):
        self.experiment = experiment
        self.target = target
        self.space = space
        self.log = log
        limits = experiment.search.constraints
        scaling = experiment.model.decode_kwargs()
        scaling.pop("activation")
        self.scaling = scaling
        self.budget = None
        if limits.max_params is not None or limits.max_multiply_adds is not None:
            self.budget = CostBudget(max_params=limits.max_params, max_multiply_adds=limits.max_multiply_adds,
                                     input_size=experiment.task.data.image_size, **scaling)
        self.versions = package_versions()
        self.artifacts = _artifact_store(experiment)

    def __call__(self, trial: optuna.Trial):
        search = self.experiment.search
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        if self.target is not None:
            # Another worker may have started the last needed trial a moment before this one.
            trials = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            ahead = sum(1 for t in trials if t.state == TrialState.COMPLETE
                        or (t.state == TrialState.RUNNING and t.number < trial.number))
            if ahead >= self.target:
                trial.set_user_attr("cancelled", "enough trials complete or running")
                raise optuna.TrialPruned("enough trials complete or running")
        genome = self.space.sample(trial)
        cost = network_cost(genome, self.experiment.task.data.image_size, **self.scaling)
        seed = self.experiment.seed + trial.number
        trial_dir = os.path.join(self.experiment.run_dir, "trials", f"{trial.number:05d}")
        os.makedirs(trial_dir, exist_ok=True)
        genome_path = os.path.join(trial_dir, "genome.yaml")
        genome.save(genome_path)
        for key, value in (("genome", genome.to_yaml()), ("fingerprint", genome.fingerprint),
                           ("params", cost.params), ("multiply_adds", cost.multiply_adds), ("seed", seed),
                           ("versions", self.versions)):
            trial.set_user_attr(key, value)
        if self.artifacts is not None:
            optuna.artifacts.upload_artifact(artifact_store=self.artifacts, file_path=genome_path,
                                             study_or_trial=trial)
        known = {"params": float(cost.params), "multiply_adds": float(cost.multiply_adds)}
        if self.budget is not None:
            constraints = self.budget(genome)
            trial.set_user_attr("constraints", constraints)
            if any(v > 0 for v in constraints):
                trial.set_user_attr("infeasible", True)
                self.log(f"trial {trial.number}: genome {genome.fingerprint} is over budget; not trained")
                return self._values(known, None)
        twin = self._evaluated_twin(trial, genome.fingerprint)
        if twin is not None:
            trial.set_user_attr("duplicate_of", twin.number)
            trial.set_user_attr("metrics", twin.user_attrs.get("metrics", {}))
            self.log(f"trial {trial.number}: genome {genome.fingerprint} was trained in trial {twin.number}; reusing")
            return twin.values if len(twin.values) > 1 else twin.values[0]

        config = to_data(self.experiment.train_config)
        config["task"]["training"]["seed"] = seed
        report = self._reporter(trial) if len(search.objectives) == 1 else None
        started = time.perf_counter()
        try:
            metrics = train_in_child(genome, config, trial_dir, report)
        except TrialFailed as err:
            trial.set_user_attr("fail_reason", str(err))
            raise
        wall = time.perf_counter() - started
        trial.set_user_attr("wall_time_s", wall)
        trial.set_user_attr("process_overhead_s", max(0.0, wall - metrics["timing"]["total"]))
        trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if k not in ("history", "timing")})
        return self._values(known, metrics)

    def _values(self, known: dict, metrics: Optional[dict]):
        values = []
        for name, direction in zip(self.experiment.search.metric_names, self.experiment.search.directions):
            if name in COST_METRICS:
                values.append(known[name])
            elif metrics is None:  # infeasible: the worst value, so no sampler prefers it
                values.append(0.0 if direction == "maximize" else math.inf)
            else:
                values.append(float(metrics[name]))
        return values if len(values) > 1 else values[0]

    def _evaluated_twin(self, trial, fingerprint: str):
        for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if other.user_attrs.get("fingerprint") == fingerprint and not other.user_attrs.get("infeasible"):
                return other
        return None

    def _reporter(self, trial):
        metric = self.experiment.search.metric_names[0]

        def report(step: int, metrics: dict) -> bool:
            if metric in metrics:
                trial.report(float(metrics[metric]), step)
                return not trial.should_prune()
            return True

        return report


def _artifact_store(experiment: Experiment):
    path = os.path.join(experiment.run_dir, "artifacts")
    os.makedirs(path, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(path)


def train_in_child(genome: Genome, config: dict, out_dir: str, report=None, timeout: Optional[float] = None) -> dict:
    """Run ``train_and_evaluate`` in a spawned process; intermediate reports come back through a pipe.

    ``report(step, metrics)`` returns False to prune (raises ``optuna.TrialPruned``).
    Raises :class:`TrialFailed` with the reason when the child raises, diverges or dies.
    """
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_child_main, args=(child_end, genome.to_dict(), config, out_dir),
                              name="spinenas-trial", daemon=True)
    process.start()
    child_end.close()
    outcome = None
    try:
        while outcome is None:
            try:
                if parent_end.poll(0.5):
                    message = parent_end.recv()
                    if message[0] == "report":
                        keep = True if report is None else report(message[1], message[2])
                        parent_end.send(keep)
                    else:
                        outcome = message
                elif not process.is_alive():
                    break
            except (EOFError, OSError):  # the child died mid-message (killed, out of memory)
                break
        process.join(30)
    finally:
        if process.is_alive():
            process.terminate()
            process.join(10)
            if process.is_alive():
                process.kill()
    if outcome is None:
        raise TrialFailed(f"training process ended without a result ({_describe_exit(process.exitcode)})")
    kind, payload = outcome
    if kind == "done":
        return payload
    if kind == "pruned":
        raise optuna.TrialPruned(f"pruned at step {payload}")
    raise TrialFailed(payload)


def _describe_exit(code) -> str:
    if code is None:
        return "still running"
    if code < 0:
        name = signal.Signals(-code).name
        hint = "; killed, perhaps out of memory" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {code}"


class _Pruned(Exception):
    pass


def _child_main(conn, genome_data: dict, config_data: dict, out_dir: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    step_seen = [0]
    try:
        from nas.config import from_data
        from nas.experiment import TrainConfig
        from nas.tasks.detection.train import TrainingDiverged, train_and_evaluate

        def report(step, metrics):
            step_seen[0] = step
            conn.send(("report", step, metrics))
            if not conn.recv():
                raise _Pruned

        config = from_data(TrainConfig, config_data, "")
        try:
            metrics = train_and_evaluate(Genome.from_dict(genome_data), config, report, out_dir=out_dir)
        except TrainingDiverged as err:
            conn.send(("error", f"diverged: {err}"))
            return
        conn.send(("done", json.loads(json.dumps(metrics))))
    except _Pruned:
        conn.send(("pruned", step_seen[0]))
    except Exception as err:  # any failure of one trial is reported, not raised into the study
        last = traceback.extract_tb(err.__traceback__)[-1]
        conn.send(("error", f"{type(err).__name__}: {err} (at {os.path.basename(last.filename)}:{last.lineno})"))
    finally:
        conn.close()


# ------------------------------------------------------------------ driver
def run_search(experiment: Experiment, *, n_trials: Optional[int] = None, timeout: Optional[float] = None,
               storage_url: Optional[str] = None, study_name: Optional[str] = None,
               log: Callable[[str], None] = print, enqueue: bool = True) -> optuna.Study:
    """Create or resume the study and run trials until it has ``n_trials`` complete ones.

    Safe to run in several processes on one study (``enqueue=False`` in all
    but the one that queues the seeds): trials never exceed ``n_trials``, a
    dead worker's trial is failed and retried, and a lost storage connection
    is retried with backoff before the worker gives up with a clear message.
    """
    from nas.tasks.detection.dataset import prepare_data

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # children inherit it before TensorFlow loads
    target = n_trials or experiment.search.n_trials
    budget = timeout if timeout is not None else experiment.search.timeout
    train, val = prepare_data(experiment.task.data, progress=enqueue)  # fail early on bad data
    log(f"data: train {train.summary()}; val {val.summary()}")
    study = open_study(experiment, storage_url, study_name)
    space = experiment.search_space.build()
    if enqueue:
        queued = enqueue_seeds(study, space, experiment.search_space.load_seed_genomes(
            os.path.dirname(experiment.source or ".")))
        if queued:
            log(f"queued {queued} seed genome(s)")
    objective = Objective(experiment, space, log, target=target)
    started, failures = time.monotonic(), 0
    url = _redacted(storage_url or experiment.storage_url)
    while True:
        state = _with_retries(lambda: _tidy_and_count(study, experiment.search.max_retries, log), url, log)
        complete, running = state
        if complete >= target:
            break
        if budget is not None and time.monotonic() - started >= budget:
            log(f"stopping: timeout of {budget:.0f} s reached")
            break
        if complete + running >= target:
            time.sleep(2)  # the last trials are running elsewhere; wait for them to finish or fail
            continue
        log(f"[{complete}/{target} complete] starting a trial")
        _with_retries(lambda: study.optimize(objective, n_trials=1, catch=(TrialFailed,)), url, log)
        last = _with_retries(lambda: _last_own_trial(study), url, log)
        if last is None or last.user_attrs.get("cancelled"):
            continue
        log(describe_trial(last, study))
        failures = failures + 1 if last.state == TrialState.FAIL else 0
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise TrialFailed(f"{failures} trials in a row failed; the last because: "
                              f"{last.user_attrs.get('fail_reason', 'unknown')}")
    return study


def _tidy_and_count(study, max_retries: int, log) -> tuple[int, int]:
    orphans = fail_orphaned_trials(study, max_retries)
    if orphans:
        log(f"marked trial(s) {orphans} failed: their worker died")
    optuna.storages.fail_stale_trials(study)  # a no-op unless the storage keeps heartbeats
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    complete = sum(1 for t in trials if t.state == TrialState.COMPLETE)
    return complete, len(trials) - complete


def _last_own_trial(study):
    pid, host = os.getpid(), socket.gethostname()
    for trial in reversed(study.get_trials(deepcopy=False)):
        if trial.user_attrs.get("worker") == {"host": host, "pid": pid}:
            return trial
    return None


STORAGE_RETRIES = 5


def _with_retries(action, url: str, log):
    """Run a storage action, retrying lost connections with exponential backoff."""
    delay = 1.0
    for attempt in range(1, STORAGE_RETRIES + 1):
        try:
            return action()
        except Exception as err:
            if not _is_connection_error(err):
                raise
            if attempt == STORAGE_RETRIES:
                raise StorageError(f"lost the connection to storage {url} ({_cause(err)}); gave up after "
                                   f"{attempt} attempts. Finished trials are safe; run the command again "
                                   "when the database is back") from None
            log(f"storage {url} unreachable ({_cause(err)[:120]}); retrying in {delay:.0f} s")
            time.sleep(delay)
            delay *= 2


def _is_connection_error(err: Exception) -> bool:
    import sqlalchemy.exc

    return isinstance(err, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                            sqlalchemy.exc.DisconnectionError, ConnectionError))


def describe_trial(trial, study) -> str:
    """One line about a finished trial."""
    attrs = trial.user_attrs
    parts = [f"trial {trial.number} {trial.state.name}"]
    if trial.values:
        names = study.user_attrs.get("metrics") or [f"value{i}" for i in range(len(trial.values))]
        parts.append(" ".join(f"{n}={_fmt(v)}" for n, v in zip(names, trial.values)))
    if "params" in attrs:
        parts.append(f"params={attrs['params'] / 1e6:.2f}M madds={attrs['multiply_adds'] / 1e9:.2f}G")
    if attrs.get("infeasible"):
        parts.append("(infeasible)")
    if "duplicate_of" in attrs:
        parts.append(f"(same as trial {attrs['duplicate_of']})")
    if attrs.get("fail_reason"):
        parts.append(f"reason: {attrs['fail_reason']}")
    if "wall_time_s" in attrs:
        parts.append(f"{attrs['wall_time_s']:.0f}s")
    if "fingerprint" in attrs:
        parts.append(f"[{attrs['fingerprint']}]")
    return "  ".join(parts)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


def best_trials(study: optuna.Study) -> list:
    """The best feasible trial (one objective) or the feasible Pareto front (several)."""
    feasible = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not t.user_attrs.get("infeasible")]
    if not feasible:
        return []
    if len(study.directions) == 1:
        sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
        return [max(feasible, key=lambda t: (sign * t.value, -t.number))]
    signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]

    def dominates(a, b):
        pa = [s * v for s, v in zip(signs, a.values)]
        pb = [s * v for s, v in zip(signs, b.values)]
        return all(x >= y for x, y in zip(pa, pb)) and any(x > y for x, y in zip(pa, pb))

    front = [t for t in feasible if not any(dominates(o, t) for o in feasible if o is not t)]
    unique = {}
    for t in sorted(front, key=lambda t: t.number):
        unique.setdefault(t.user_attrs.get("fingerprint", t.number), t)
    return list(unique.values())


__all__ = ["Objective", "StorageError", "TrialFailed", "best_trials", "describe_trial", "enqueue_seeds",
           "fail_orphaned_trials", "make_pruner", "make_sampler", "open_storage", "open_study", "run_search",
           "train_in_child"]
