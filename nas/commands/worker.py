"""``spinenas worker``: join an existing study, from this machine or any other, and train its trials."""

from __future__ import annotations

import os

from nas.arguments import add_command
from nas.commands.common import experiment_from_args
from nas.commands.search_run import add_budget_options, run_trials


def run_worker(args) -> int:
    """Join an existing study from this machine and run trials until it has enough."""
    from nas.search.driver import run_search as search
    from nas.search.study import open_study

    experiment, _ = experiment_from_args(args)
    open_study(experiment, args.storage, args.study_name, create=False)  # must exist: a typo makes no new study
    if args.gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpus

    def train():
        return search(experiment, n_trials=args.n_trials, timeout=args.timeout, storage_url=args.storage,
                      study_name=args.study_name, enqueue=False), 0

    return run_trials(train, "worker", "interrupted: finished trials are stored")


def add_parser(subparsers) -> None:
    """Register ``spinenas worker``."""
    parser = add_command(
        subparsers, "worker", run_worker, "join an existing study (from any machine) and run its trials",
        "Join a study that `spinenas search` created, through its shared storage, and train trials until the "
        "study has enough. Same exit statuses as search.")
    parser.add_argument("file", help="the study's experiment file")
    parser.add_argument("--storage", required=True, help="the study's storage URL, e.g. postgresql://user@host/db")
    parser.add_argument("--study-name", required=True, help="the study's name")
    add_budget_options(parser)
    parser.add_argument("--gpus", metavar="IDS", help="CUDA_VISIBLE_DEVICES for this worker, e.g. 0,1")
