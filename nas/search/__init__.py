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

# Loaded on first use, so importing one module (say ``ranking`` from the report or a sampler)
# does not import the driver.
_LAZY = {
    "TrialFailed": "child", "TrialProcess": "child", "train_in_child": "child",
    "SearchStopped": "driver", "prepare": "driver", "run_search": "driver",
    "Objective": "objective",
    "best_trials": "ranking", "ranked_trials": "ranking", "sign": "ranking",
    "StorageError": "storage", "open_storage": "storage",
    "describe_trial": "study", "enqueue_seeds": "study", "fail_orphaned_trials": "study", "load_study": "study",
    "open_study": "study", "trial_genome": "study", "trial_rows": "study",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"nas.search.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nas.search' has no attribute {name!r}")
