"""Running a fidelity plan: the study ``<study name>-fidelity``, its data, and one or several workers.

Every item of the plan is a trial of that study in the experiment's storage,
queued once and trained by whichever worker claims it
(:mod:`nas.fidelity.work_queue`), so a killed run resumes where it stopped
and several workers, on this machine or others, share one study.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional, Sequence

import optuna

from nas.config import ConfigError
from nas.cpu import onednn_settings, use_settings
from nas.fidelity.plan import Plan, make_plan
from nas.fidelity.table import import_records, load_table
from nas.fidelity.work_queue import Worker, describe_time_left, enqueue_missing, requeue_orphans
from nas.search.storage import open_storage, redacted
from nas.search.study import EXPERIMENT_KEY, study_names
from nas.tasks.base import DataError

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
                        create: bool = True, kind: str = "fidelity") -> optuna.Study:
    """Create or resume the experiment's fidelity study, refusing one made by a different experiment.

    The fingerprint leaves out the ``fidelities`` section: changing a
    fidelity's settings keeps the study, and its items become new work (their
    keys hold a hash of the settings).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url or experiment.storage_url
    name = fidelity_study_name(experiment, study_name)  # a confirmation passes its own name (kind "confirm")
    storage = open_storage(url, experiment.search.heartbeat_interval, 0, create=create)
    if not create and name not in study_names(storage):
        raise ConfigError(f"no {kind} study {name!r} in {redacted(url)}; run spinenas {kind} first")
    metric, direction = primary_metric(experiment)
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(seed=experiment.seed))
    stored = study.user_attrs.get(EXPERIMENT_KEY)
    if stored is None:
        study.set_user_attr(EXPERIMENT_KEY, experiment.fingerprint)
        study.set_user_attr("experiment", experiment.to_data())
        study.set_user_attr("metric", metric)
        study.set_user_attr("kind", kind)
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
        with Worker(experiment, study, plan.keys, primary_metric(experiment)[0], log,
                    storage_url=storage_url) as worker:
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
    from nas.experiment import load_experiment
    from nas.workers import start_worker_process

    log = start_worker_process(index, parent, threads)
    experiment = load_experiment(experiment_path, overrides)
    # The same plan as the parent's (seeded), so this worker claims exactly the planned items.
    plan = _plan(experiment, *sample, prepare_fidelities(experiment, lambda line: None,
                                                         _data_needed(experiment, sample[3])))
    study = open_fidelity_study(experiment, storage_url, study_name, create=False)
    try:
        with Worker(experiment, study, plan.keys, primary_metric(experiment)[0], log,
                    storage_url=storage_url) as worker:
            worker.run()
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)


def _run_processes(workers: int, experiment_path: str, overrides: list, storage_url, study_name, sample: tuple,
                   log) -> None:
    from nas.workers import cpu_shares, describe_threads, run_processes

    threads = cpu_shares(workers)
    run_processes(_worker_main, [(index, experiment_path, overrides, storage_url, study_name, sample, os.getpid(),
                                  threads[index]) for index in range(workers)], "spinenas-fidelity",
                  [describe_threads(t) if t else "" for t in threads], log)
