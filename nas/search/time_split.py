"""Sharing one ``--timeout`` between a search and the confirmation that ends it.

With a time budget ``T`` and a ``confirm`` section, the search keeps back
the confirmation's estimated time: it starts a trial only when that trial
is expected to end no later than half a trial past ``T`` minus that share,
so the search's end is centred on its share rather than up to a whole
trial short of it (a stricter rule ended a recorded one-hour run 11% early).
A confirmation run is estimated from the study's
own trials: the median time of a trained search trial (start to finish),
whose training part is scaled to the confirmation's settings by the ratios
of epochs, of the seed genome's multiply-adds per image (image size and
scaling) and of training images, times the runs each confirmation worker
trains. Until a search trial has finished the share is not known and trials
start freely; it is then re-estimated after every trial.

Examples:
    >>> split = TimeSplit(total=3600, runs=12, workers=2, ratio=1.5, trial_seconds=100.0, training_seconds=80.0)
    >>> round(split.run_seconds), round(split.confirm_seconds), round(split.search_seconds)
    (140, 840, 2760)
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Optional

from optuna.trial import TrialState

from nas.tasks.base import model_cost


@dataclasses.dataclass(frozen=True)
class TimeSplit:
    """A time budget split: ``runs`` confirmation runs on ``workers`` workers, each ``ratio`` search trials long.

    ``ratio`` scales a search trial's training; the rest of a trial (starting,
    building, recording) is taken as the same for a confirmation run.
    """

    total: float
    runs: int
    workers: int
    ratio: float
    trial_seconds: Optional[float] = None  # a trained search trial's median time; None: none finished yet
    training_seconds: float = 0.0  # of which training
    factors: dict = dataclasses.field(default_factory=dict)  # what ``ratio`` is made of

    @property
    def run_seconds(self) -> Optional[float]:
        """One confirmation run's estimated time (None until a search trial is timed)."""
        if self.trial_seconds is None:
            return None
        return self.trial_seconds - self.training_seconds + self.ratio * self.training_seconds

    @property
    def confirm_seconds(self) -> Optional[float]:
        """The confirmation's estimated wall time (None until a search trial is timed)."""
        run = self.run_seconds
        return None if run is None else math.ceil(self.runs / self.workers) * run

    @property
    def search_seconds(self) -> Optional[float]:
        """What is left of the budget for the search (None until a search trial is timed)."""
        confirm = self.confirm_seconds
        return None if confirm is None else max(0.0, self.total - confirm)

    def may_start_trial(self, elapsed: float) -> bool:
        """Whether a search trial started ``elapsed`` seconds into the budget may run: it is expected to end
        no later than half a trial past the search's share (its end then falls within half a trial either side)."""
        if self.trial_seconds is None:
            return elapsed < self.total
        return elapsed + self.trial_seconds / 2 <= self.search_seconds

    def timed(self, seconds: Optional[tuple[float, float]]) -> "TimeSplit":
        """This split with the search trials' measured medians (:func:`trial_seconds`; None: not yet)."""
        if seconds is None:
            return self
        return dataclasses.replace(self, trial_seconds=seconds[0], training_seconds=seconds[1])

    def describe(self) -> str:
        """One line: the split in seconds, or how it will be set once a trial is timed."""
        made_of = ", ".join(f"{name} x{value:.2f}" for name, value in self.factors.items())
        runs = f"{self.runs} confirmation run(s) on {self.workers} worker(s), each {self.ratio:.2f}x a search trial's training"
        if made_of:
            runs += f" ({made_of})"
        if self.trial_seconds is None:
            return (f"time budget {self.total:.0f} s: {runs}; the confirmation's share is set once a search "
                    "trial has been timed")
        return (f"time budget {self.total:.0f} s: search {self.search_seconds:.0f} s, confirmation "
                f"{self.confirm_seconds:.0f} s ({runs}; a search trial takes {self.trial_seconds:.1f} s, "
                f"{self.training_seconds:.1f} s of it training)")


def plan_split(experiment, total: float, workers: int, num_classes: int, search_images: Optional[int],
               confirm_images: Optional[int], seeds: int) -> TimeSplit:
    """The split of ``total`` seconds for ``experiment``'s confirm section, before any trial is timed.

    ``search_images``/``confirm_images`` are the training images of the
    search's and the confirmation's data (None: unknown, taken as equal);
    ``seeds`` is the number of distinct seed genomes.
    """
    confirm = experiment.confirm_config()
    search = experiment.train_config
    seed_genome = experiment.search_space.load_seed_genomes(_source_folder(experiment))[0]
    search_madds = model_cost(experiment.task_plugin, seed_genome, search, num_classes)[0].multiply_adds
    confirm_madds = model_cost(experiment.task_plugin, seed_genome, confirm, num_classes)[0].multiply_adds
    factors = {"epochs": confirm.task.training.epochs / search.task.training.epochs,
               "multiply-adds": confirm_madds / search_madds}
    if search_images and confirm_images:
        factors["train images"] = confirm_images / search_images
    runs = (experiment.confirm.top_k + seeds) * experiment.confirm.repeats
    return TimeSplit(total=float(total), runs=runs, workers=max(1, workers), ratio=math.prod(factors.values()),
                     factors=factors)


def trial_seconds(study) -> Optional[tuple[float, float]]:
    """Medians over the study's trained COMPLETE trials: (start-to-finish seconds, of which training).

    Training is the training process's own time (its ``timing`` total): it
    grows with epochs, images and model size; the rest (starting, building,
    recording) does not. Duplicates (a twin's result reused) and over-budget
    genomes took no training and are left out. None: no trial timed yet.
    """
    whole, training = [], []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        wall = t.user_attrs.get("wall_time_s")
        if wall is None or "duplicate_of" in t.user_attrs or not (t.datetime_start and t.datetime_complete):
            continue
        whole.append((t.datetime_complete - t.datetime_start).total_seconds())
        training.append(max(0.0, wall - t.user_attrs.get("process_overhead_s", 0.0)))
    if not whole:
        return None
    return statistics.median(whole), min(statistics.median(training), statistics.median(whole))


def _source_folder(experiment) -> str:
    import os

    return os.path.dirname(experiment.source or ".")
