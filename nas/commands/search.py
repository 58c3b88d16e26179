"""``spinenas search``: create or resume an experiment's study and train trials, in one or several workers."""

from __future__ import annotations

import time

from nas.arguments import add_command, positive_int, worker_count
from nas.commands.common import experiment_from_args
from nas.commands.search_run import EXIT_INTERRUPTED, EXIT_TRIALS_FAILED, add_budget_options, run_trials


def run_search(args) -> int:
    """Create or resume the study, run trials (in one or several workers), print the best architecture(s)."""
    from nas.search.driver import run_search as search
    from nas.search.study import load_study

    started = time.monotonic()  # a --timeout counts from here, confirmation included
    experiment, overrides = experiment_from_args(args)
    storage = args.storage or experiment.storage_url
    print(f"experiment {experiment.name}: storage {storage}, study {args.study_name or experiment.study_name}")
    workers = _workers(args, experiment, storage) if args.workers == "auto" else args.workers

    def train():
        if workers == 1 and not args.gpus_per_worker:
            return search(experiment, n_trials=args.n_trials, timeout=_time_left(args, experiment, started),
                          storage_url=args.storage, study_name=args.study_name), 0
        from nas.workers import run_workers

        codes = run_workers(args.file, overrides, workers, storage_url=args.storage, study_name=args.study_name,
                            n_trials=args.n_trials, timeout=_time_left(args, experiment, started),
                            gpus_per_worker=args.gpus_per_worker)
        study = load_study(storage, args.study_name or experiment.study_name)
        if all(codes):
            print("spinenas: every worker stopped with an error (see the worker lines above)")
            return study, EXIT_TRIALS_FAILED
        return study, 0

    status = run_trials(train, "search", "interrupted: finished trials are stored; run the same command again to resume")
    if status != 0 or experiment.confirm is None:
        return status
    # The confirm section: the search ends with its best genomes retrained against the seeds (nas.confirm).
    from nas.confirm import format_verdict, run_confirm

    searched = time.monotonic() - started
    print("\nconfirming the best genomes against the seed genome(s)")
    try:
        result = run_confirm(experiment, storage_url=args.storage, study_name=args.study_name,
                             workers=1 if args.gpus_per_worker else workers, experiment_path=args.file,
                             overrides=overrides)
    except KeyboardInterrupt:
        data = f" --data {args.data}" if args.data else ""  # without it, FILE would name another experiment
        print(f"interrupted: finished confirmation runs are stored; spinenas confirm {args.file}{data} resumes them")
        return EXIT_INTERRUPTED
    print(format_verdict(result))
    total = time.monotonic() - started
    budget = args.timeout or experiment.search.timeout
    print(f"time: search {searched:.0f} s, confirmation {total - searched:.0f} s, {total:.0f} s in all"
          + (f" of a {budget:.0f} s budget" if budget else ""))
    return 0


def _time_left(args, experiment, started: float):
    """The ``--timeout`` (or the file's search.timeout) less what has passed since the command started."""
    budget = args.timeout or experiment.search.timeout
    return None if budget is None else max(1.0, budget - (time.monotonic() - started))


def _workers(args, experiment, storage: str) -> int:
    """What ``--workers auto`` means for this search on this machine (see :func:`nas.workers.auto_workers`)."""
    from nas.workers import auto_workers, describe_threads, gpu_count, physical_memory, thread_settings, usable_cores

    if experiment.task.training.strategy == "mirrored":  # every trial takes all the GPUs
        return 1
    gpus, left = gpu_count(), _trials_left(args, experiment, storage)
    if args.gpus_per_worker:
        return max(1, min(gpus // args.gpus_per_worker, left))
    cores = usable_cores()
    workers = auto_workers(left, gpus=gpus, cores=cores, memory=physical_memory())
    if workers > 1:
        shares = sorted({describe_threads(thread_settings(workers, cores, i)) for i in range(workers)})
        print(f"--workers auto: {workers} workers side by side, {' or '.join(shares)} each "
              "(--workers 1 trains one trial at a time on every core)")
    return workers


def _trials_left(args, experiment, storage: str) -> int:
    """Complete trials the search still needs; its whole budget when the study cannot be read yet."""
    from optuna.trial import TrialState

    from nas.search.study import load_study

    target = args.n_trials or experiment.search.n_trials
    try:
        study = load_study(storage, args.study_name or experiment.study_name)
        return max(0, target - len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))
    except Exception:  # no study yet, or a storage the search itself will report on: only a cap is lost
        return target


def add_parser(subparsers) -> None:
    """Register ``spinenas search``."""
    parser = add_command(
        subparsers, "search", run_search, "run (or resume) the search an experiment file describes",
        "Create the experiment's Optuna study, or resume it, and train trials until it has search.n_trials "
        "complete ones. Exit status: 0 done, 1 trials kept failing, 2 bad input, 130 interrupted.")
    parser.add_argument("file", help="experiment YAML, e.g. experiments/quickstart.yaml")
    parser.add_argument("--storage", help="Optuna storage URL (default sqlite:///runs/<name>/study.db)")
    parser.add_argument("--study-name", help="study name (default: the experiment's name)")
    add_budget_options(parser)
    parser.add_argument("--workers", type=worker_count, default="auto",
                        help="worker processes on this machine, or auto (default): on a machine without GPUs, "
                             "one per CPU core (at most one per 3 GiB of memory and per trial left), the cores "
                             "shared out among them; with GPUs, one (or one per --gpus-per-worker group)")
    parser.add_argument("--gpus-per-worker", type=positive_int, metavar="K",
                        help="pin each local worker to its own K GPUs (CUDA_VISIBLE_DEVICES)")
