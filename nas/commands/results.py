"""``spinenas results``: list a study's trials as a table or JSON, with its latest proxy self-check."""

from __future__ import annotations

import json

from nas.arguments import add_command, positive_int
from nas.commands.common import add_study_options, recorded_verdict, study_from_args


def run_results(args) -> int:
    """List the study's trials, best first when --top is given."""
    from nas.search.study import trial_rows
    from nas.trials import metric_names, ranked_trials

    study = study_from_args(args)
    rows = trial_rows(study, ranked_trials(study)[: args.top] if args.top else None)
    verdict = recorded_verdict(args)
    if args.json:
        if args.with_check:
            from nas.search.proxy_check import CHECK_KEY

            print(json.dumps({"trials": rows, "proxy_check": study.user_attrs.get(CHECK_KEY), "verdict": verdict}))
        else:
            print(json.dumps(rows))
        return 0
    names = metric_names(study)
    print(f"{'#':>4}  {'state':<9} " + " ".join(f"{n:>10}" for n in names)
          + f" {'params':>9} {'madds':>9}  {'fingerprint':<16}  note")
    for r in rows:
        values = " ".join(f"{r['values'][n]:>10.4g}" if r["values"] else f"{'-':>10}" for n in names)
        params = f"{r['params'] / 1e6:8.2f}M" if r["params"] else f"{'-':>9}"
        madds = f"{r['multiply_adds'] / 1e9:8.2f}G" if r["multiply_adds"] else f"{'-':>9}"
        print(f"{r['number']:>4}  {r['state']:<9} {values} {params} {madds}  {r['fingerprint'] or '-':<16}  {r['note']}")
    _print_check(study)
    if verdict is not None:
        from nas.confirm import format_verdict

        print("\nconfirmation (spinenas confirm):\n" + format_verdict(verdict))
    return 0


def _print_check(study) -> None:
    """The study's latest self-check: how well proxies, baselines and the predictor rank its trials."""
    from nas.search.proxy_check import CHECK_KEY, format_check

    check = study.user_attrs.get(CHECK_KEY)
    if check:
        print("\n" + format_check(check))
        if len(check.get("history", [])) > 1:
            for past in check["history"][:-1]:
                print("  earlier: " + format_check({**past, "objective": check["objective"]}))


def add_parser(subparsers) -> None:
    """Register ``spinenas results``."""
    parser = add_command(subparsers, "results", run_results, "list a study's trials",
                         "List the trials of an existing study (never creates one).")
    add_study_options(parser)
    parser.add_argument("--top", type=positive_int, metavar="K", help="only the K best feasible trials, best first")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.add_argument("--with-check", action="store_true",
                        help="with --json: print {trials, proxy_check, verdict} (the proxies' Kendall tau and the "
                             "confirmation's verdict, when there is one) instead of rows")
