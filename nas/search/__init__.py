"""Run an experiment as an Optuna study: sample genomes, train each in a child process, record everything.

One module per job: :mod:`~nas.search.storage` (opening storages, riding out
lost connections), :mod:`~nas.search.study` (opening, resuming and reading
studies), :mod:`~nas.search.objective` (one trial), :mod:`~nas.search.training_run`
(one training run, recorded: what search and fidelity share), :mod:`~nas.search.child`
(the training process), :mod:`~nas.search.screen` (screening candidates),
:mod:`~nas.search.trial_writes` (writes Optuna keeps private) and
:mod:`~nas.search.driver` (the loop). Which trials are best is
:mod:`nas.trials`, which every layer may read.

Examples:
    >>> from nas.experiment import load_experiment
    >>> from nas.search import run_search
    >>> study = run_search(load_experiment("experiments/quickstart.yaml"))  # doctest: +SKIP
"""

from nas.search.child import TrialProcess, train_in_child
from nas.search.driver import SearchStopped, prepare, run_search
from nas.search.objective import Objective
from nas.search.storage import StorageError, open_storage
from nas.search.study import (describe_trial, enqueue_seeds, fail_orphaned_trials, load_study, open_study,
                              trial_rows)

__all__ = ["Objective", "SearchStopped", "StorageError", "TrialProcess", "describe_trial", "enqueue_seeds",
           "fail_orphaned_trials", "load_study", "open_storage", "open_study", "prepare", "run_search",
           "train_in_child", "trial_rows"]
