"""``spinenas fidelity``: measure how well cheap training settings rank architectures like an expensive one."""

from __future__ import annotations

import argparse
import json
import os

from nas.arguments import UserError, add_command, non_negative_int, output_folder, positive_int
from nas.commands.common import add_data_option, experiment_from_args


def run_fidelity_command(args) -> int:
    """Train what is missing of the measurement (unless told not to), then print and write the comparison."""
    from nas.fidelity import export_jsonl, fidelity_report, format_report, load_table, records_from_study
    from nas.fidelity.run import fidelity_study_name, primary_metric, run_fidelity

    experiment, overrides = experiment_from_args(args)
    configs = experiment.fidelity_configs()
    if not experiment.fidelities:
        print("note: the experiment has no fidelities section; measuring one fidelity, 'proxy' (its own settings)")
    metric, direction = primary_metric(experiment)
    if args.table:
        records = load_table(args.table)
        print(f"table {args.table}: {len(records)} record(s)")
    else:
        storage = args.storage or experiment.storage_url
        name = fidelity_study_name(experiment, args.study_name)
        print(f"experiment {experiment.name}: storage {storage}, study {name}; fidelities "
              + ", ".join(configs) + f" (reference {experiment.reference_fidelity})")
        try:
            study, _ = run_fidelity(experiment, args.genomes, repeats=args.repeats, repeats_all=args.repeats_all,
                                    workers=args.workers, only=args.fidelity or (), storage_url=args.storage,
                                    study_name=args.study_name, experiment_path=args.file, overrides=overrides,
                                    train=not args.no_train, genomes_at=dict(args.genomes_at or ()),
                                    import_tables=args.import_table or ())
        except KeyboardInterrupt:
            print("interrupted: finished runs are stored; run the same command again to resume")
            return 130
        records = records_from_study(study)
    records, stale = _current(records, experiment)
    if stale:
        print(f"{stale} record(s) trained with other settings of a fidelity's name left out")
    if args.export:
        count = export_jsonl(records, args.export)
        print(f"wrote {count} record(s) to {args.export}")
    names = list(configs)
    report = fidelity_report(records, names, experiment.reference_fidelity, direction=direction, top_k=args.top_k)
    report["metric"] = metric
    print(format_report(report))
    if args.out:
        _write_outputs(args, records, report, names)
    return 0


def _current(records: list[dict], experiment) -> tuple[list[dict], int]:
    """The records made with the settings the experiment's fidelities have now, and how many were not."""
    from nas.fidelity.plan import current_settings

    current = current_settings(experiment)
    kept = [r for r in records if current.get(r["fidelity"]) == r.get("fidelity_fingerprint")]
    return kept, len(records) - len(kept)


def _write_outputs(args, records: list[dict], report: dict, names: list[str]) -> None:
    from nas.fidelity.plot import scatter_plot
    from nas.fidelity.stats import COST_KEYS

    folder = output_folder(args.out)
    reference = report["reference"]
    x = args.scatter_x or next((n for n in names if n != reference), "multiply_adds")
    y = args.scatter_y or reference
    for option, value in (("--scatter-x", x), ("--scatter-y", y)):
        allowed = names + (list(COST_KEYS) if option == "--scatter-x" else [])
        if value not in allowed:
            raise UserError(f"{option} {value}: choose one of {', '.join(allowed)}")
    report["scatter"] = {"x": x, "y": y, "path": "scatter.png"}
    scatter_plot(records, x, y, os.path.join(folder, "scatter.png"), metric=report["metric"],
                 direction=report["direction"])
    with open(os.path.join(folder, "fidelity.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {os.path.join(folder, 'fidelity.json')} and {os.path.join(folder, 'scatter.png')} "
          f"({y} against {x})")


def _fidelity_count(text: str) -> tuple[str, int]:
    """``NAME=N`` of ``--genomes-at`` as ``(NAME, N)``."""
    name, sep, count = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=N, e.g. long=20")
    return name, positive_int(count)


def add_parser(subparsers) -> None:
    """Register ``spinenas fidelity``."""
    parser = add_command(
        subparsers, "fidelity", run_fidelity_command,
        "measure whether cheap training settings rank architectures like expensive ones",
        "Train a seeded sample of the experiment's space (its seed genomes, r50-like when the "
        "space's levels allow, then random genomes) at every fidelity of the file's fidelities "
        "section (--genomes-at caps a fidelity to the first N genomes), as trials of the study "
        "<name>-fidelity in the experiment's storage (resumable; "
        "finished runs are never repeated), then print rank correlations between fidelities, "
        "top-k overlap and the seed genome's spread over training seeds.")
    parser.add_argument("file", help="experiment YAML with a fidelities section, e.g. experiments/fidelity_shapes.yaml")
    parser.add_argument("--genomes", type=positive_int, default=10, metavar="N",
                        help="architectures to measure, seed genomes and r50-like included (default 10); a larger "
                             "N later extends the same sample")
    parser.add_argument("--genomes-at", type=_fidelity_count, action="append", metavar="NAME=N",
                        help="measure only the first N genomes at fidelity NAME, e.g. long=20 (repeatable; a costly "
                             "fidelity needs fewer points than a cheap one)")
    parser.add_argument("--repeats", type=non_negative_int, default=0, metavar="R",
                        help="extra training seeds of the seed genome at every fidelity, for noise (default 0)")
    parser.add_argument("--repeats-all", type=non_negative_int, default=0, metavar="R",
                        help="extra training seeds of every genome at every fidelity (default 0)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="worker processes on this machine sharing the study (default 1)")
    parser.add_argument("--fidelity", action="append", metavar="NAME",
                        help="train only this fidelity now, e.g. the cheapest for every genome first (repeatable; "
                             "the report covers all)")
    parser.add_argument("--storage", help="Optuna storage URL (default: the experiment's)")
    parser.add_argument("--study-name", help="study name (default: <the experiment's study name>-fidelity)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a value of the file, e.g. fidelities.quick.task.training.epochs=2 (repeatable)")
    add_data_option(parser)
    parser.add_argument("--no-train", action="store_true",
                        help="train nothing: report on what the study has recorded so far")
    parser.add_argument("--table", metavar="JSONL",
                        help="report on an exported table (--export's file) instead of the study; trains nothing")
    parser.add_argument("--import-table", action="append", metavar="JSONL",
                        help="first add the runs of an exported table the study lacks (e.g. bench/results/...jsonl "
                             "on a new machine), so they are not trained again (repeatable)")
    parser.add_argument("--export", metavar="JSONL",
                        help="write the recorded runs as JSON lines, e.g. bench/results/fidelity_NAME.jsonl")
    parser.add_argument("--out", metavar="DIR", help="write fidelity.json and scatter.png to this folder")
    parser.add_argument("--top-k", type=positive_int, default=5, metavar="K",
                        help="top-k overlap: how many of the K best by one fidelity are among its K best by the "
                             "other (default 5)")
    parser.add_argument("--scatter-x", metavar="NAME",
                        help="x axis of scatter.png: a fidelity, params or multiply_adds (default: the cheapest "
                             "fidelity other than the reference)")
    parser.add_argument("--scatter-y", metavar="NAME",
                        help="y axis of scatter.png: a fidelity (default: the reference)")
