"""The work queue of a study of items: queue the missing ones once, let workers claim and train them.

An item is a trial's user attributes (:meth:`nas.fidelity.plan.Item.attrs`):
a genome, its train config and training seed, under a key that names the
work. :func:`enqueue_missing` queues each item that has no complete, waiting
or running trial (``study.enqueue_trial``); a :class:`Worker` claims waiting
trials one at a time (the WAITING -> RUNNING change succeeds for one worker
only, as in ``study.ask``) and trains them in a warm child process
(:func:`nas.search.training_run.train_trial`). So a killed run resumes where
it stopped, a trial left RUNNING by a dead process is failed and queued
again, and several workers share one study.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
from collections import Counter, defaultdict
from typing import Callable, Optional

import optuna
from optuna.trial import TrialState

from nas.fidelity.plan import ITEM_ATTRS, Plan
from nas.fidelity.table import run_number
from nas.search.child import TrialProcess
from nas.search.precision import PrecisionMismatch
from nas.search.storage import redacted
from nas.search.study import fail_orphaned_trials
from nas.search.trial_writes import claim_waiting
from nas.search.training_run import machine, package_versions, train_trial
from nas.trials import TrialFailed


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
    """Trains claimed items in one warm training process (a context manager).

    ``metric`` is the one a trial's value holds; each item trains in
    ``<run_dir>/<folder>/<trial number>``.
    """

    def __init__(self, experiment, study: optuna.Study, keys: set, metric: str, log: Callable[[str], None] = print,
                 *, storage_url: Optional[str] = None, folder: str = "fidelity"):
        self.experiment, self.study, self.keys, self.metric, self.log = experiment, study, keys, metric, log
        self.storage_url = redacted(storage_url or experiment.storage_url)  # for messages
        self.folder = os.path.join(experiment.run_dir, folder)
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
        label = (f"trial {run_number(self.study, trial.number)}: {attrs['fingerprint']} ({attrs['role']}) at "
                 f"{attrs['fidelity']} seed {attrs['seed']}")
        try:
            metrics, wall = train_trial(self.process, trial, genome, attrs["settings"], attrs["seed"],
                                  os.path.join(self.folder, f"{trial.number:05d}"), curves=True,
                                  attrs={"versions": self.versions, "machine": self.machine},
                                  storage_url=self.storage_url, log=self.log)
        except TrialFailed as err:
            trial.set_user_attr("training_failed", True)
            self.study.tell(trial, state=TrialState.FAIL)
            self.log(f"{label}: FAILED ({err})")
            return
        except PrecisionMismatch:
            self.study.tell(trial, state=TrialState.FAIL)  # not training_failed: the next run queues it again
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            raise  # finished elsewhere while it trained: its outcome stands (see run)
        except BaseException:
            # Interrupted: not the genome's fault, so the next run trains it again.
            trial.set_user_attr("fail_reason", "interrupted")
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        value = metrics.get(self.metric)
        value = math.nan if value is None else float(value)  # None: nothing to measure (APs without small objects)
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
