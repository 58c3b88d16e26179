"""Run an experiment as an Optuna study: sample genomes, train each in a child process, record everything.

One module per job: :mod:`~nas.search.storage` (opening storages, riding out
lost connections), :mod:`~nas.search.study` (opening, resuming and reading
studies), :mod:`~nas.search.objective` (one trial), :mod:`~nas.search.training_run`
(one training run, recorded: what search and fidelity share), :mod:`~nas.search.child`
(the training process), :mod:`~nas.search.screen` (screening candidates),
:mod:`~nas.search.trial_writes` (writes Optuna keeps private) and
:mod:`~nas.search.driver` (the loop). Which trials are best is
:mod:`nas.trials`, which every layer may read. The package itself imports
nothing, so reading one of its modules (a report reading
:mod:`~nas.search.proxy_check`) loads no search driver.

Examples:
    >>> from nas.experiment import load_experiment
    >>> from nas.search.driver import run_search
    >>> study = run_search(load_experiment("experiments/quickstart.yaml"))  # doctest: +SKIP
"""
