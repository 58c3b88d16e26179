"""What ``spinenas search`` and ``worker`` share: the budget options, and a run that ends with the best trials."""

from __future__ import annotations

from typing import Callable

from nas.arguments import positive_float, positive_int
from nas.commands.common import add_data_option

EXIT_TRIALS_FAILED = 1
EXIT_INTERRUPTED = 130


def add_budget_options(parser) -> None:
    """``--n-trials``, ``--timeout``, ``--strategy``, ``--set`` and ``--data``."""
    parser.add_argument("--n-trials", type=positive_int, metavar="N",
                        help="complete trials to reach (default: the file's search.n_trials)")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="stop starting trials after this many seconds (default: the file's search.timeout); "
                             "with a confirm section, the search leaves the confirmation its estimated share")
    parser.add_argument("--strategy", choices=["default", "mirrored"],
                        help="mirrored: train each trial on all visible GPUs (tf.distribute.MirroredStrategy)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a value of the file, e.g. task.training.epochs=2 (repeatable)")
    add_data_option(parser)


def run_trials(train: Callable[[], tuple], who: str, interrupted: str) -> int:
    """Run ``train()`` (it returns the study and an exit status), print the best trial(s); the exit status.

    A search that stopped (trials kept failing) is one line naming ``who``
    stopped; an interrupted one prints ``interrupted``.
    """
    from nas.search.driver import SearchStopped
    from nas.trials import TrialFailed

    try:
        study, status = train()
    except (TrialFailed, SearchStopped) as err:
        print(f"spinenas: {who} stopped: {err}")
        return EXIT_TRIALS_FAILED
    except KeyboardInterrupt:
        print(interrupted)
        return EXIT_INTERRUPTED
    print_best(study)
    return status


def print_best(study) -> None:
    """The best feasible trial (or Pareto front) and its genome, or why there is none yet."""
    from optuna.trial import TrialState

    from nas.search.study import describe_trial
    from nas.trials import best_trials

    best = best_trials(study)
    if not best:
        trials = study.get_trials(deepcopy=False)
        infeasible = sum(1 for t in trials if t.user_attrs.get("infeasible"))
        failed = sum(1 for t in trials if t.state == TrialState.FAIL)
        why = []
        if infeasible:
            why.append(f"{infeasible} over the constraints")
        if failed:
            why.append(f"{failed} failed")
        print(f"\nno feasible trial completed yet ({len(trials)} trial(s): {', '.join(why) or 'none trained'})")
        return
    title = "best trial" if len(study.directions) == 1 else f"Pareto front ({len(best)} trials)"
    print(f"\n{title}:")
    for trial in best:
        print("  " + describe_trial(trial, study))
    if len(study.directions) == 1 and "genome" in best[0].user_attrs:
        print("\nbest genome:\n" + best[0].user_attrs["genome"])
