"""The search loop: prepare the task's data, open the study, run trials until enough are complete."""

from __future__ import annotations

import os
import socket
import time
import warnings
from typing import Callable, Optional

import optuna
from optuna.trial import TrialState

from nas.trials import TrialFailed
from nas.search.latency import prepare_latency
from nas.search.objective import Objective
from nas.search.proxy_check import format_check, record_check
from nas.search.screen import prescreen
from nas.search.storage import STORAGE_RETRIES, StorageError, cause, lost_connection, redacted, with_retries
from nas.search.time_split import TimeSplit, plan_split, trial_seconds
from nas.search.study import build_strategies, describe_trial, enqueue_seeds, fail_orphaned_trials, open_study
from nas.cpu import onednn_settings, use_settings

MAX_CONSECUTIVE_FAILURES = 5
# Over-budget samples in a row before the search gives up on the constraints.
MAX_CONSECUTIVE_INFEASIBLE = 100


class SearchStopped(RuntimeError):
    """The search cannot go on (too many failures, or no genome fits the constraints)."""


def prepare(experiment, log: Callable[[str], None] = print, progress: bool = True):
    """Prepare the task's data once (generate, read, check) and return its :class:`DataSummary`."""
    summary = experiment.task_plugin.prepare_data(experiment.task, progress=progress)
    log(f"data: {summary.description}")
    return summary


def run_search(experiment, *, n_trials: Optional[int] = None, timeout: Optional[float] = None,
               storage_url: Optional[str] = None, study_name: Optional[str] = None,
               log: Callable[[str], None] = print, enqueue: bool = True, workers: int = 1,
               budget_start: Optional[float] = None) -> optuna.Study:
    """Create or resume the study and run trials until it has ``n_trials`` complete ones.

    Safe to run in several processes on one study (``enqueue=False`` in all
    but the one that queues the seeds): trials never exceed ``n_trials``, a
    dead worker's trial is failed and retried, and a lost storage connection
    is retried with backoff before the worker gives up with a clear message.
    Over-budget genomes end PRUNED and do not count towards ``n_trials``.
    With a ``timeout`` and a confirm section, the search leaves the
    confirmation its estimated share (:mod:`nas.search.time_split`;
    ``workers`` is how many processes the confirmation will train in). The
    ``timeout`` counts from ``budget_start`` (a ``time.time()`` stamp; the
    parent of several workers passes its own start, so its data preparation,
    pre-screen and the workers' start-up count too), by default this call.
    """
    # Elapsed time is measured on the monotonic clock, offset by what had passed before this call.
    before = 0.0 if budget_start is None else max(0.0, time.time() - budget_start)
    started = time.monotonic() - before
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # children inherit it before TensorFlow loads
    use_settings(onednn_settings())  # likewise
    target = experiment.search.n_trials if n_trials is None else n_trials
    budget = experiment.search.timeout if timeout is None else timeout
    build_strategies(experiment)  # a misspelt sampler, pruner or proxy fails before any data is made
    data = prepare(experiment, log, progress=enqueue)  # fail early on bad data
    if enqueue:  # the kernels this machine's latency table lacks, timed once before any trial
        prepare_latency(experiment, data.num_classes, log)
    split = None
    if budget is not None and experiment.confirm is not None:
        split = confirm_time_split(experiment, budget, workers, data, log, progress=enqueue)
    study = open_study(experiment, storage_url, study_name)
    space = experiment.search_space.build()
    objective = Objective(experiment, space, data.num_classes, log, target=target, storage_url=storage_url)
    if hasattr(study.sampler, "bind"):  # samplers that screen or cost their own candidates (evolution, predictor)
        study.sampler.bind(screener=objective.screener, cost=objective.cost)
    try:
        if enqueue:
            queue_first_trials(study, experiment, space, objective.screener, target, log)
        _loop(study, objective, experiment, target, budget, redacted(storage_url or experiment.storage_url), log,
              started, split)
    finally:
        objective.close()
    return study


def queue_first_trials(study, experiment, space, screener, target: int, log: Callable[[str], None] = print) -> None:
    """Queue what a study starts with: the seed genomes, then, when ``screener`` is given and the sampler does not
    screen its own candidates, the best-scored of a pool of random genomes (once per study)."""
    queued = enqueue_seeds(study, space, experiment.search_space.load_seed_genomes(
        os.path.dirname(experiment.source or ".")))
    if queued:
        log(f"queued {queued} seed genome(s)")
    if screener is not None and not hasattr(study.sampler, "bind"):
        queued = prescreen(study, space, screener, target, experiment.seed, log)
        if queued:
            log(f"pre-screen queued the {queued} best-scored genome(s)")


def confirm_time_split(experiment, budget: float, workers: int, data, log, progress: bool) -> TimeSplit:
    """The search's and the confirmation's shares of ``budget`` (logged when ``progress``).

    Prepares the confirmation's data too, so a broken ``confirm.data`` fails
    before any trial rather than after the search.
    """
    from nas.confirm import prepare_confirm_data

    confirm_data = prepare_confirm_data(experiment, progress=progress)
    seeds = {g.fingerprint for g in experiment.search_space.load_seed_genomes(
        os.path.dirname(experiment.source or "."))}
    split = plan_split(experiment, budget, workers, data.num_classes, data.train_images, confirm_data.train_images,
                       len(seeds))
    if progress:
        log(split.describe())
    return split


def _loop(study, objective, experiment, target: int, budget: Optional[float], url: str, log,
          started: float, split: Optional[TimeSplit] = None) -> None:
    failures, infeasible, cut_off = 0, 0, 0
    while True:
        complete, running = with_retries(lambda: _tidy_and_count(study, experiment.search.max_retries, log), url, log)
        if complete >= target:
            break
        elapsed = time.monotonic() - started
        if split is not None:
            untimed = split.trial_seconds is None
            split = split.timed(with_retries(lambda: trial_seconds(study), url, log))
            if untimed and split.trial_seconds is not None:
                log(split.describe())
            if not split.may_start_trial(elapsed):
                share = (f"about {split.confirm_seconds:.0f} s" if split.confirm_seconds is not None
                         else "no search trial was timed to estimate it by")
                log(f"stopping after {elapsed:.0f} s: the rest of the {budget:.0f} s budget is the confirmation's "
                    f"({share})")
                break
        elif budget is not None and elapsed >= budget:
            log(f"stopping: timeout of {budget:.0f} s reached")
            break
        if complete + running >= target:
            time.sleep(2)  # the last trials are running elsewhere; wait for them to finish or fail
            continue
        log(f"[{complete}/{target} complete] starting a trial")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                study.optimize(objective, n_trials=1, catch=(TrialFailed,))
            except Exception as err:
                # Ctrl-C or SIGTERM while Optuna writes a trial's result surfaces from its cleanup as another
                # error; it is still the user's interrupt (the trial left RUNNING is failed on the next start).
                if isinstance(err.__context__, KeyboardInterrupt):
                    raise KeyboardInterrupt(str(err.__context__)) from err
                lost = None if isinstance(err, StorageError) else lost_connection(err)  # StorageError: gave up
                if lost is None:
                    raise
                cut_off += 1
                if cut_off >= STORAGE_RETRIES:
                    raise StorageError(f"lost the connection to storage {url} during {cut_off} trials in a row "
                                       f"({cause(lost)}). Finished trials are safe; run the command again when "
                                       "the database is steady") from None
                # The tidy-up at the top of the loop waits for the database, then finishes the cut-off
                # trial from its recorded values or fails it and queues it again.
                log(f"storage {url} unreachable ({cause(lost)[:120]}) during a trial; retrying in 1 s")
                time.sleep(1)
                continue
            cut_off = 0
        last = with_retries(lambda: _last_own_trial(study), url, log)
        if last is None or last.user_attrs.get("cancelled"):
            continue
        log(with_retries(lambda: describe_trial(last, study), url, log))  # it reads the study's metric names
        check = with_retries(lambda: record_check(study, experiment.search.check_every), url, log)
        if check is not None:
            log(format_check(check))
        failures = failures + 1 if last.state == TrialState.FAIL else 0
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise TrialFailed(f"{failures} trials in a row failed; the last because: "
                              f"{last.user_attrs.get('fail_reason', 'unknown')}")
        infeasible = infeasible + 1 if last.user_attrs.get("infeasible") else 0
        if infeasible >= MAX_CONSECUTIVE_INFEASIBLE:
            limits = experiment.search.constraints
            raise SearchStopped(
                f"the last {infeasible} sampled genomes were all over the constraints (max_params="
                f"{limits.max_params}, max_multiply_adds={limits.max_multiply_adds}"
                + (f", max_latency_ms={limits.max_latency_ms}" if limits.max_latency_ms is not None else "")
                + f"; the last cost {last.user_attrs.get('params', 0) / 1e6:.2f} M params, "
                f"{last.user_attrs.get('multiply_adds', 0) / 1e9:.3f} G multiply-adds"
                + (f", {last.user_attrs['latency_ms']:.1f} ms" if "latency_ms" in last.user_attrs else "")
                + "); loosen search.constraints")


def _tidy_and_count(study, max_retries: int, log) -> tuple[int, int]:
    orphans = fail_orphaned_trials(study, max_retries, log)
    if orphans:
        log(f"marked trial(s) {orphans} failed: their worker died")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
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
