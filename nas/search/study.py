"""Studies and their records: open or resume, queue seeds, fail orphaned trials, read results.

A study remembers the experiment that made it (its fingerprint and data in
the study's user attributes); every trial records its genome, costs, seed
and package versions, so a study can be read back without the file.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Callable, Optional

import optuna
from optuna.trial import TrialState

from nas.config import ConfigError
from nas.trials import TrialFailed, metric_names
from nas.search.storage import open_storage, redacted
from nas.search.trial_writes import complete_trial, fail_trial

EXPERIMENT_KEY = "experiment_fingerprint"
# The objective values a trained trial records before Optuna writes them (a lost write is finished from it).
RESULT_ATTR = "objective_values"


def hide_interrupted_trials() -> None:
    """Keep Optuna from printing a traceback for a trial stopped by Ctrl-C or SIGTERM, or failed as expected.

    The command says so itself: an interrupted trial in its "interrupted" line,
    a failed one (:class:`~nas.trials.TrialFailed`: a crash in training,
    divergence, a dead training process) in the trial's line with its reason,
    the training process's traceback in the trial's ``error.log``. A command's
    own process skips it under ``--verbose``, which shows Optuna's lines too.
    """
    optuna.logging.get_logger("optuna")  # creates Optuna's handler, so the filter has somewhere to go
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _HideInterruptedTrial) for f in handler.filters):
            handler.addFilter(_HideInterruptedTrial())


class _HideInterruptedTrial(logging.Filter):
    """Drop Optuna's traceback (and its "failed with value None" line) for a trial stopped by Ctrl-C or SIGTERM,
    or ended by a :class:`~nas.trials.TrialFailed`.

    A traceback (with every encoding parameter) would read as a crash of spinenas.
    """

    def __init__(self):
        super().__init__()
        self.hidden: set = set()  # the trial numbers ("Trial 3 failed ...") whose failure is reported elsewhere

    def filter(self, record: logging.LogRecord) -> bool:
        words = record.getMessage().split()
        number = words[1] if len(words) > 1 and words[0] == "Trial" else None
        info = record.exc_info
        if info and info[0] is not None and issubclass(info[0], (KeyboardInterrupt, TrialFailed)):
            self.hidden.add(number)
            return False
        if number in self.hidden and "failed with value None" in record.getMessage():
            self.hidden.discard(number)
            return False
        return True


def open_study(experiment, storage_url: Optional[str] = None, study_name: Optional[str] = None,
               create: bool = True) -> optuna.Study:
    """Create or resume the experiment's study, refusing one made by a different experiment.

    With ``create=False`` the study (and a SQLite or journal file) must exist already.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url or experiment.storage_url
    name = study_name or experiment.study_name
    search = experiment.search
    storage = open_storage(url, search.heartbeat_interval, search.max_retries, create=create)
    sampler, pruner = build_strategies(experiment)
    if not create and name not in study_names(storage):
        raise ConfigError(missing_study(storage, name, url))
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                                directions=search.directions, load_if_exists=True)
    stored = study.user_attrs.get(EXPERIMENT_KEY)
    if stored is None:
        study.set_user_attr(EXPERIMENT_KEY, experiment.fingerprint)
        study.set_user_attr("experiment", experiment.to_data())
        study.set_user_attr("metrics", search.metric_names)
    elif not experiment.matches(stored, study.user_attrs.get("experiment")):
        raise ConfigError(
            f"study {name!r} in {redacted(url)} was made by a different experiment (fingerprint {stored}, "
            f"this file {experiment.fingerprint}); pick another --study-name or storage"
            + _legacy_hint(study.user_attrs.get("experiment")))
    return study


def build_strategies(experiment):
    """The experiment's sampler and pruner, built; its screening proxy name checked.

    The schema leaves these names to the registries that hold them: a
    misspelt name or option is a ``ConfigError`` naming its key here.
    """
    from nas.pruners import make_pruner
    from nas.samplers import make_sampler
    from nas.screening.registry import check_name

    search = experiment.search
    sampler = make_sampler(search.sampler.name, search.sampler.options, space=experiment.search_space.build(),
                           seed=experiment.seed)
    pruner = make_pruner(search.pruner.name, search.pruner.options)
    if search.screening:
        try:
            check_name(search.screening.proxy)
        except ConfigError as err:
            raise ConfigError(f"search.screening.proxy: {err}") from None
    return sampler, pruner


def _legacy_hint(stored) -> str:
    from nas.experiment.fingerprint import LEGACY_VALUES

    missing = []
    for path, value in LEGACY_VALUES.items():
        node = stored
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None and isinstance(stored, dict):
            missing.append(f"--set {'.'.join(path)}={value}")
    return f" (the study predates a setting; to resume it as it was made: {' '.join(missing)})" if missing else ""


def load_study(storage_url: str, study_name: str) -> optuna.Study:
    """An existing study by storage and name, for reading; never creates a storage or a study."""
    storage = open_storage(storage_url, create=False)
    if study_name not in study_names(storage):
        raise ConfigError(missing_study(storage, study_name, storage_url))
    return optuna.load_study(study_name=study_name, storage=storage)


def study_names(storage) -> list[str]:
    """Names of the studies in ``storage``."""
    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def missing_study(storage, name: str, url: str) -> str:
    """The message for a study name that is not in ``storage``, listing the ones that are."""
    names = sorted(study_names(storage))
    return f"no study {name!r} in {redacted(url)}; studies there: {', '.join(names) or 'none'}"


def enqueue_seeds(study: optuna.Study, space, genomes: list) -> int:
    """Queue the seed genomes once per study; returns how many were queued now."""
    if study.user_attrs.get("seeds_enqueued"):
        return 0
    for genome in genomes:
        study.enqueue_trial(space.encode(genome), user_attrs={"seed_genome": genome.fingerprint})
    study.set_user_attr("seeds_enqueued", True)
    return len(genomes)


def fail_orphaned_trials(study: optuna.Study, max_retries: int = 0, log: Callable[[str], None] = print) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker process on this host is gone (e.g. SIGKILLed).

    The calling process's own RUNNING trials count too: a worker runs one
    trial at a time and calls this between trials, so such a trial was cut
    off (its database connection dropped mid-trial). Each is queued again
    with the same parameters, up to ``max_retries`` times per genome. A trial
    that had recorded its objective values (:data:`RESULT_ATTR`: it was
    trained, and only Optuna's last write was lost) is finished COMPLETE with
    them instead, so its genome is never trained twice. Returns the trial
    numbers marked FAIL.
    """
    failed = []
    host, me = socket.gethostname(), os.getpid()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        pid = worker.get("host") == host and worker.get("pid")
        if not pid or (pid != me and process_alive(pid)):
            continue
        if RESULT_ATTR in trial.user_attrs:
            if complete_trial(study, trial, trial.user_attrs[RESULT_ATTR]):  # False: another worker finished it
                log(f"trial {trial.number}: finished from its recorded result (the storage went away before "
                    "the result was written)")
            continue
        reason = ("the trial was cut off (its storage connection was lost)" if pid == me
                  else f"worker process {pid} died during the trial")
        if not fail_trial(study, trial, reason):
            continue  # another worker marked it first (and queued the retry)
        failed.append(trial.number)
        retries = trial.user_attrs.get("retries", 0)
        if retries < max_retries and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retries": retries + 1})
    return failed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs (a zombie counts as dead)."""
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


def describe_trial(trial, study) -> str:
    """One line about a finished trial."""
    attrs = trial.user_attrs
    parts = [f"trial {trial.number} {trial.state.name}"]
    if trial.values:
        parts.append(" ".join(f"{n}={_fmt(v)}" for n, v in zip(metric_names(study), trial.values)))
    if "params" in attrs:
        parts.append(f"params={attrs['params'] / 1e6:.2f}M madds={attrs['multiply_adds'] / 1e9:.2f}G"
                     + (f" latency={attrs['latency_ms']:.1f}ms" if "latency_ms" in attrs else ""))
    if attrs.get("infeasible"):
        parts.append("(infeasible: over the constraints, not trained)")
    if "duplicate_of" in attrs:
        parts.append(f"(same as trial {attrs['duplicate_of']})")
    if attrs.get("fail_reason"):
        parts.append(f"reason: {attrs['fail_reason']}")
    if attrs.get("error_log"):
        parts.append(f"(traceback in {attrs['error_log']})")
    if "wall_time_s" in attrs:
        parts.append(f"{attrs['wall_time_s']:.0f}s")
    if "fingerprint" in attrs:
        parts.append(f"[{attrs['fingerprint']}]")
    return "  ".join(parts)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


def trial_rows(study: optuna.Study, trials=None) -> list[dict]:
    """One dict per trial: number, state, objectives, params, multiply-adds, latency (or None), fingerprint, notes."""
    names = metric_names(study)
    rows = []
    for t in (study.get_trials(deepcopy=False) if trials is None else trials):
        attrs = t.user_attrs
        note = ("infeasible" if attrs.get("infeasible") else
                f"same as {attrs['duplicate_of']}" if "duplicate_of" in attrs else attrs.get("fail_reason", ""))
        rows.append({
            "number": t.number, "state": t.state.name,
            "values": dict(zip(names, t.values)) if t.values else None,
            "params": attrs.get("params"), "multiply_adds": attrs.get("multiply_adds"),
            "latency_ms": attrs.get("latency_ms"), "fingerprint": attrs.get("fingerprint"), "note": note,
        })
    return rows
