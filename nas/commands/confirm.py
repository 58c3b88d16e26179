"""``spinenas confirm``: retrain a search's best genomes and its seeds over several seeds, and say what won."""

from __future__ import annotations

import json

from nas.arguments import add_command, positive_int
from nas.commands.common import add_data_option, experiment_from_args


def run_confirm_command(args) -> int:
    """Train what the confirmation still lacks (unless --report) and print the verdict."""
    from nas.confirm import format_verdict, run_confirm

    experiment, overrides = experiment_from_args(args)
    log = (lambda line: None) if args.json else print
    result = run_confirm(experiment, storage_url=args.storage, study_name=args.study_name, log=log,
                         train=not args.report, workers=args.workers, experiment_path=args.file, overrides=overrides)
    print(json.dumps(result) if args.json else format_verdict(result))
    return 0


def add_parser(subparsers) -> None:
    """Register ``spinenas confirm``."""
    parser = add_command(
        subparsers, "confirm", run_confirm_command, "retrain the best genomes and the seeds, judge them",
        "Retrain the search study's confirm.top_k best distinct feasible genomes and every seed genome "
        "confirm.repeats times (training seeds seed, seed+1, ...) at the confirm settings, then compare each "
        "candidate with each seed genome: means, a 95% Welch interval of the difference, Holm-corrected "
        "p-values and cost ratios. Killed, the same command resumes; finished runs are never repeated.")
    parser.add_argument("file", help="the search's experiment file (with a confirm section)")
    parser.add_argument("--storage", help="the search study's storage URL (default: the experiment's)")
    parser.add_argument("--study-name", help="the search study's name (default: the experiment's name)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value (repeatable)")
    add_data_option(parser, "the folder the search ran on (its --data), so FILE names the search's experiment; "
                            "the confirmation trains and evaluates on it too, unless the file's confirm.data names "
                            "other (held-out) data (--set confirm.data=DIR2 does). The same as --set "
                            "task.data.root=DIR --set task.data.generate_shapes=null")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="training processes side by side on this machine, the cores shared out among them "
                             "(default 1); more machines may run the same command on a shared storage")
    parser.add_argument("--report", action="store_true", help="judge the recorded runs only; train nothing")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
