"""Running a plan as an Optuna study: queue the missing items once, let workers claim and train them.

Every item is a trial of the study ``<study name>-fidelity`` in the
experiment's storage. The planning process queues each item that has no
complete, waiting or running trial (``study.enqueue_trial``); workers claim
waiting trials one at a time (the WAITING -> RUNNING change succeeds for one
worker only, as in ``study.ask``) and train them in a warm child process
through the task registry. So a killed run resumes where it stopped, a trial
left RUNNING by a dead process is failed and queued again, and several
workers share one study.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
from collections import Counter, defaultdict
from typing import Callable, Optional, Sequence

import optuna
from optuna.trial import TrialState

from nas.config import ConfigError
from nas.tasks.base import DataError
from nas.fidelity.plan import ITEM_ATTRS, Plan, make_plan
from nas.fidelity.table import import_records, load_table, run_number
from nas.search.child import TrialProcess
from nas.trials import TrialFailed
from nas.search.objective import package_versions
from nas.search.precision import PrecisionMismatch, record_precision
from nas.search.storage import open_storage, redacted
from nas.search.study import EXPERIMENT_KEY, fail_orphaned_trials, study_names
from nas.search.trial_writes import claim_waiting
from nas.cpu import onednn_setting, onednn_settings, use_settings

STUDY_SUFFIX = "-fidelity"


def fidelity_study_name(experiment, study_name: Optional[str] = None) -> str:
    """``--study-name``, or ``<the experiment's study name>-fidelity``."""
    return study_name or experiment.study_name + STUDY_SUFFIX


def primary_metric(experiment) -> tuple[str, str]:
    """The metric a trial's value holds and its direction: the first trained objective, else the task's default."""
    task = experiment.task_plugin
    for name, direction in zip(experiment.search.metric_names, experiment.search.directions):
        if name in task.metrics:
            return name, direction
    return task.default_objective, task.metrics[task.default_objective]


def open_fidelity_study(experiment, storage_url: Optional[str] = None, study_name: Optional[str] = None,
                        create: bool = True) -> optuna.Study:
    """Create or resume the experiment's fidelity study, refusing one made by a different experiment.

    The fingerprint leaves out the ``fidelities`` section: changing a
    fidelity's settings keeps the study, and its items become new work (their
    keys hold a hash of the settings).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url or experiment.storage_url
    name = fidelity_study_name(experiment, study_name)
    storage = open_storage(url, experiment.search.heartbeat_interval, 0, create=create)
    if not create and name not in study_names(storage):
        raise ConfigError(f"no fidelity study {name!r} in {redacted(url)}; run spinenas fidelity first")
    metric, direction = primary_metric(experiment)
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(seed=experiment.seed))
    stored = study.user_attrs.get(EXPERIMENT_KEY)
    if stored is None:
        study.set_user_attr(EXPERIMENT_KEY, experiment.fingerprint)
        study.set_user_attr("experiment", experiment.to_data())
        study.set_user_attr("metric", metric)
        study.set_user_attr("kind", "fidelity")
    elif not experiment.matches(stored, study.user_attrs.get("experiment")):
        raise ConfigError(f"study {name!r} in {redacted(url)} was made by a different experiment (fingerprint "
                          f"{stored}, this file {experiment.fingerprint}); pick another --study-name or storage")
    return study


def prepare_fidelities(experiment, log: Callable[[str], None] = print, names: Sequence[str] = ()) -> dict:
    """Prepare the data of each fidelity in ``names`` (default all) once; returns class counts by fidelity.

    Fidelities may differ in data; a fidelity whose data cannot be read is
    named in the error, so it can be fetched or left out with ``--fidelity``.
    """
    task = experiment.task_plugin
    classes, done = {}, {}
    for name, config in experiment.fidelity_configs().items():
        if names and name not in names:
            continue
        key = repr(config.task.data)
        if key not in done:
            try:
                summary = task.prepare_data(config.task, progress=False)
            except DataError as err:
                raise DataError(f"fidelity {name}: {err} (prepare that data, or train the other fidelities now "
                                "with --fidelity NAME)") from None
            done[key] = summary.num_classes
            log(f"data ({name}): {summary.description}")
        classes[name] = done[key]
    return classes


def machine() -> dict:
    """Where a trial ran: host, platform, processor, core count and oneDNN (None: TensorFlow's own choice)."""
    return {"host": socket.gethostname(), "platform": platform.platform(), "processor": platform.processor(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "onednn": onednn_setting()}


def enqueue_missing(study: optuna.Study, plan: Plan, max_retries: int) -> dict:
    """Queue every planned item without a complete, waiting or running trial; return counts and given-up items.

    An item whose training failed more than ``max_retries`` times is not
    queued again (it is reported); one failed only because its worker died is.
    """
    trials = study.get_trials(deepcopy=False)
    by_key: dict = {}
    for trial in trials:
        by_key.setdefault(trial.user_attrs.get("item"), []).append(trial)
    live = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
    counts = {"complete": 0, "pending": 0, "queued": 0, "given_up": []}
    for item in plan.items:
        mine = by_key.get(item.key, [])
        if any(t.state == TrialState.COMPLETE for t in mine):
            counts["complete"] += 1
            continue
        if any(t.state in live for t in mine):
            counts["pending"] += 1
            continue
        failures = sum(1 for t in mine if t.state == TrialState.FAIL and t.user_attrs.get("training_failed"))
        if failures > max_retries:
            counts["given_up"].append(item.key)
            continue
        study.enqueue_trial({}, user_attrs=item.attrs())
        counts["queued"] += 1
    return counts


def claim(study: optuna.Study, keys: set):
    """Take the first waiting trial of a planned item (None when there is none); one worker wins each."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if trial.user_attrs.get("item") not in keys:
            continue  # queued by a plan with other genomes or settings: left for that plan
        claimed = claim_waiting(study, trial)
        if claimed is not None:
            return claimed
    return None


def requeue_orphans(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials whose process on this host died, and queue their items again."""
    failed = fail_orphaned_trials(study, max_retries=0)
    trials = study.get_trials(deepcopy=False) if failed else []
    for number in failed:
        attrs = trials[number].user_attrs
        if "item" in attrs:
            study.enqueue_trial({}, user_attrs={k: attrs[k] for k in ITEM_ATTRS if k in attrs})
    return failed


def time_left(study: optuna.Study, keys: set) -> tuple[int, float, list[str]]:
    """Planned runs not finished yet, the seconds they take one after another, and the fidelities not yet timed.

    Each fidelity's runs are costed at the median wall time of its finished
    runs: a median, so a run slowed by a busy or paused machine does not skew it.
    """
    walls, pending, done = defaultdict(list), {}, set()
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if attrs.get("item") not in keys:
            continue
        if trial.state == TrialState.COMPLETE:
            done.add(attrs["item"])
            if "wall_time_s" in attrs:
                walls[attrs["fidelity"]].append(float(attrs["wall_time_s"]))
        elif trial.state in (TrialState.WAITING, TrialState.RUNNING):
            pending[attrs["item"]] = attrs["fidelity"]  # an item queued twice is one run
    left = Counter(fidelity for item, fidelity in pending.items() if item not in done)
    seconds = sum(count * statistics.median(walls[name]) for name, count in left.items() if walls[name])
    return sum(left.values()), seconds, sorted(name for name in left if not walls[name])


def describe_time_left(study: optuna.Study, keys: set) -> str:
    """``"12 run(s) left, about 1.5 h of runs at the pace so far"`` (or what cannot be timed yet).

    The time is the runs' own, one after another: workers on separate
    machines divide it between them.
    """
    count, seconds, untimed = time_left(study, keys)
    if count == 0:
        return "no run left"
    text = f"{count} run(s) left"
    if seconds:
        text += f", about {seconds / 3600:.1f} h" if seconds >= 5400 else f", about {max(1, round(seconds / 60))} min"
        text += " of runs at the pace so far"
    if untimed:
        text += f" ({', '.join(untimed)} not timed yet: no finished run)"
    return text


class Worker:
    """Trains claimed items in one warm training process (a context manager)."""

    def __init__(self, experiment, study: optuna.Study, keys: set, log: Callable[[str], None] = print):
        self.experiment, self.study, self.keys, self.log = experiment, study, keys, log
        self.metric, _ = primary_metric(experiment)
        self.process = TrialProcess(experiment.search.trials_per_process,
                                    experiment.search.max_process_memory_growth_mb)
        self.versions, self.machine = package_versions(), machine()
        self.trained = 0

    def run(self, limit: Optional[int] = None) -> int:
        """Claim and train items until none is waiting (or ``limit`` were trained); returns how many ran."""
        ran = 0
        while limit is None or ran < limit:
            orphans = requeue_orphans(self.study)
            if orphans:
                self.log(f"marked trial(s) {orphans} failed (their process died) and queued their items again")
            trial = claim(self.study, self.keys)
            if trial is None:
                break
            try:
                self.train(trial)
            except optuna.exceptions.UpdateFinishedTrialError as err:
                # Another process finished it meanwhile (a person failing it by hand, say): its outcome stands.
                self.log(f"trial {run_number(self.study, trial.number)} was finished elsewhere while it trained; "
                         f"this result is dropped ({err})")
            ran += 1
        return ran

    def train(self, trial: optuna.Trial) -> None:
        """Train one claimed item and tell the study the outcome."""
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        attrs = trial.user_attrs
        twin = self._complete_twin(attrs["item"], trial.number)
        if twin is not None:  # queued twice (an orphan's retry raced a new plan): keep the first result
            trial.set_user_attr("cancelled", f"item already complete in trial {twin}")
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        from search_spaces.genome import Genome

        genome = Genome.from_yaml(attrs["genome"])
        out_dir = os.path.join(self.experiment.run_dir, "fidelity", f"{trial.number:05d}")
        label = (f"trial {run_number(self.study, trial.number)}: {attrs['fingerprint']} ({attrs['role']}) at "
                 f"{attrs['fidelity']} seed {attrs['seed']}")
        started = time.perf_counter()
        try:
            metrics = self.process.run(genome, attrs["settings"], out_dir)
        except TrialFailed as err:
            trial.set_user_attr("fail_reason", str(err))
            trial.set_user_attr("training_failed", True)
            self.study.tell(trial, state=TrialState.FAIL)
            self.log(f"{label}: FAILED ({err})")
            return
        except BaseException:
            # Interrupted: not the genome's fault, so the next run trains it again.
            trial.set_user_attr("fail_reason", "interrupted")
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        wall = time.perf_counter() - started
        value = metrics.get(self.metric)
        value = math.nan if value is None else float(value)  # None: nothing to measure (APs without small objects)
        trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if k not in ("history", "timing")})
        trial.set_user_attr("history", metrics.get("history", []))
        trial.set_user_attr("timing", metrics.get("timing", {}))
        trial.set_user_attr("wall_time_s", wall)
        trial.set_user_attr("versions", self.versions)
        trial.set_user_attr("machine", self.machine)
        try:
            record_precision(self.study, trial, attrs["settings"]["task"]["training"]["precision"],
                             metrics.get("precision"))
        except PrecisionMismatch:
            self.study.tell(trial, state=TrialState.FAIL)  # not training_failed: the next run queues it again
            raise
        if not math.isfinite(value):
            trial.set_user_attr("fail_reason", f"{self.metric} is {value}")
            trial.set_user_attr("training_failed", True)
            self.study.tell(trial, state=TrialState.FAIL)
            self.log(f"{label}: FAILED ({self.metric} is {value})")
            return
        self.study.tell(trial, value)
        self.trained += 1
        self.log(f"{label}: {self.metric}={value:.4f} in {wall:.0f} s; {describe_time_left(self.study, self.keys)}")

    def _complete_twin(self, key: str, number: int) -> Optional[int]:
        for other in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if other.user_attrs.get("item") == key and other.number != number:
                return other.number
        return None

    def close(self) -> None:
        """Stop the warm training process."""
        self.process.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_fidelity(experiment, genomes: int, *, repeats: int = 0, repeats_all: int = 0, workers: int = 1,
                 only: Sequence[str] = (), storage_url: Optional[str] = None, study_name: Optional[str] = None,
                 experiment_path: Optional[str] = None, overrides: Sequence[str] = (),
                 log: Callable[[str], None] = print, train: bool = True,
                 genomes_at: Optional[dict] = None, import_tables: Sequence[str] = ()) -> tuple[optuna.Study, Plan]:
    """Plan the measurement, queue what is missing, and train it with ``workers`` processes.

    ``only`` names the fidelities to train now (default all; e.g. the cheap
    one first for every genome). With ``train=False`` only plan and open the
    study (for reading what is recorded). Several workers need
    ``experiment_path`` (each worker process loads the file with ``overrides``).
    ``genomes_at`` caps the genomes of named fidelities (see ``make_plan``).
    ``import_tables`` are exported tables whose runs the study lacks: they are
    added as finished trials first, so a committed table resumes anywhere.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # children inherit it before TensorFlow loads
    use_settings(onednn_settings())  # likewise
    genomes_at = dict(genomes_at or {})
    unknown = [name for name in [*only, *genomes_at] if name not in experiment.fidelity_configs()]
    if unknown:
        raise ConfigError(f"no fidelity {unknown[0]!r} in the experiment; fidelities are "
                          f"{', '.join(experiment.fidelity_configs())}")
    classes = prepare_fidelities(experiment, log, _data_needed(experiment, only)) if train else None
    plan = _plan(experiment, genomes, repeats, repeats_all, only, genomes_at, classes)
    for note in plan.notes:
        log(note)
    study = open_fidelity_study(experiment, storage_url, study_name, create=train)
    if not train:
        return study, plan
    for path in import_tables:
        log(f"imported {import_records(study, load_table(path))} run(s) from {path}")
    orphans = requeue_orphans(study)
    if orphans:
        log(f"marked trial(s) {orphans} failed: their process died")
    counts = enqueue_missing(study, plan, experiment.search.max_retries)
    capped = "".join(f"; {name} the first {min(count, len(plan.genomes))}" for name, count in genomes_at.items()
                     if not only or name in only)
    log(f"{len(plan.items)} run(s) planned ({len(plan.genomes)} genomes at {', '.join(only or plan.fidelities)}"
        f"{capped}; repeats included): {counts['complete']} complete, {counts['pending']} already queued or running, "
        f"{counts['queued']} queued now; {describe_time_left(study, plan.keys)}")
    if counts["given_up"]:
        log(f"{len(counts['given_up'])} item(s) failed more than search.max_retries="
            f"{experiment.search.max_retries} time(s) and are not retried: {', '.join(counts['given_up'][:5])}")
    if workers <= 1:
        with Worker(experiment, study, plan.keys, log) as worker:
            worker.run()
    else:
        if experiment_path is None:
            raise ValueError("several workers need the experiment file's path")
        _run_processes(workers, experiment_path, list(overrides), storage_url, study_name,
                       (genomes, repeats, repeats_all, list(only), genomes_at), log)
    return study, plan


def _data_needed(experiment, only: Sequence[str]) -> list:
    """The fidelities whose data a run prepares (empty: all): those it trains, and the reference when it costs a limit."""
    limits = experiment.search.constraints
    if not only:
        return []  # all
    if limits.max_params is not None or limits.max_multiply_adds is not None:
        return [*only, experiment.reference_fidelity]
    return list(only)


def _plan(experiment, genomes: int, repeats: int, repeats_all: int, only: Sequence[str], genomes_at: dict,
          classes) -> Plan:
    plan = make_plan(experiment, genomes, repeats, repeats_all, classes, genomes_at)
    if only:
        plan.items = [item for item in plan.items if item.fidelity in only]
    return plan


def _worker_main(index: int, experiment_path: str, overrides: list, storage_url, study_name, sample: tuple,
                 parent: int, threads: Optional[dict] = None) -> None:
    from nas.search.child import exit_with_parent
    from nas.search.study import hide_interrupted_trials
    from nas.experiment import load_experiment
    from nas.workers import interrupt_on_sigterm

    exit_with_parent(parent)
    interrupt_on_sigterm()
    hide_interrupted_trials()
    use_settings(threads)  # this worker's share of the cores, inherited by its training processes

    def log(line: str) -> None:
        print(f"[worker {index}] {line}", flush=True)

    experiment = load_experiment(experiment_path, overrides)
    # The same plan as the parent's (seeded), so this worker claims exactly the planned items.
    plan = _plan(experiment, *sample, prepare_fidelities(experiment, lambda line: None,
                                                         _data_needed(experiment, sample[3])))
    study = open_fidelity_study(experiment, storage_url, study_name, create=False)
    try:
        with Worker(experiment, study, plan.keys, log) as worker:
            worker.run()
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)


def _run_processes(workers: int, experiment_path: str, overrides: list, storage_url, study_name, sample: tuple,
                   log) -> None:
    from nas.workers import cpu_shares, describe_threads, wait_for_workers

    threads = cpu_shares(workers)
    context = multiprocessing.get_context("spawn")
    processes = []
    for index in range(workers):
        process = context.Process(target=_worker_main, name=f"spinenas-fidelity-{index}",
                                  args=(index, experiment_path, overrides, storage_url, study_name, sample,
                                        os.getpid(), threads[index]))
        process.start()
        processes.append(process)
        log(f"worker {index} started (pid {process.pid}" + (f", {describe_threads(threads[index])})" if threads[index] else ")"))

    wait_for_workers(processes)
    for index, process in enumerate(processes):
        if process.exitcode:
            log(f"worker {index} ended with status {process.exitcode}")
