"""Run an experiment as an Optuna study: sample genomes, train each in a child process, record everything.

One module per job: :mod:`~nas.search.storage` (opening storages, riding out
lost connections), :mod:`~nas.search.study` (opening, resuming and reading
studies), :mod:`~nas.search.ranking` (best trials, direction signs),
:mod:`~nas.search.objective` (one trial), :mod:`~nas.search.child` (the
training process) and :mod:`~nas.search.driver` (the loop).

Example:
    >>> from nas.experiment import load_experiment
    >>> from nas.search import run_search
    >>> study = run_search(load_experiment("experiments/quickstart.yaml"))  # doctest: +SKIP
"""

from nas.search.child import TrialFailed, train_in_child
from nas.search.driver import SearchStopped, prepare, run_search
from nas.search.objective import Objective
from nas.search.ranking import best_trials, ranked_trials, sign
from nas.search.storage import StorageError, open_storage
from nas.search.study import (describe_trial, enqueue_seeds, fail_orphaned_trials, load_study, open_study,
                              trial_genome, trial_rows)

__all__ = ["Objective", "SearchStopped", "StorageError", "TrialFailed", "best_trials", "describe_trial",
           "enqueue_seeds", "fail_orphaned_trials", "load_study", "open_storage", "open_study", "prepare",
           "ranked_trials", "run_search", "sign", "train_in_child", "trial_genome", "trial_rows"]
