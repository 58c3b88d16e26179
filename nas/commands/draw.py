"""``spinenas draw`` and ``spinenas report``: permutation diagrams and search reports."""

from __future__ import annotations

import os

from nas.arguments import UserError, add_command, positive_int
from nas.commands.common import add_study_options, genome_from_arg, recorded_verdict, study_from_args


def _genomes(args) -> list:
    """(genome, title) pairs chosen by the flags."""
    from nas.trials import trial_genome
    from spinenet.specs import genome_for

    chosen = []
    if args.model_id:
        try:
            genome = genome_for(args.model_id)
        except ValueError as err:
            raise UserError(str(err)) from None
        chosen.append((genome, f"{'Mobile ' if genome.family == 'mobile' else ''}SpineNet-"
                               f"{args.model_id.upper().removeprefix('MOBILE-')}"))
    for entry in args.genome or ():
        chosen.append((genome_from_arg(entry), os.path.basename(entry)))
    if args.trial is not None:
        study = study_from_args(args)
        trial = next((t for t in study.get_trials(deepcopy=False) if t.number == args.trial), None)
        if trial is None:
            raise UserError(f"study {study.study_name!r} has no trial {args.trial}")
        chosen.append((trial_genome(trial), f"{study.study_name} trial {args.trial}"))
    if not chosen:
        raise UserError("choose what to draw: --model-id, --genome (a file, spinenet-49 or r50-like), "
                        "or --trial N with an experiment FILE or --storage/--study-name")
    return chosen


def run_draw(args) -> int:
    """Draw (or export as a graph) the chosen genomes."""
    chosen = _genomes(args)
    scaling = None
    if args.model_id:
        from spinenet.specs import scaling_for

        scaling = scaling_for(args.model_id)
    if args.format:
        from visualize.graph import genome_graph, write_graph

        if len(chosen) > 1:
            raise UserError("--format writes one graph; draw one genome at a time")
        write_graph(genome_graph(chosen[0][0]), args.output, args.format)
    else:
        from visualize.draw import draw_genome, draw_genomes

        titles = [args.title] if args.title and len(chosen) == 1 else [t for _, t in chosen]
        if len(chosen) == 1:
            draw_genome(chosen[0][0], args.output, title=titles[0], scaling=scaling, input_size=args.input_size)
        else:
            draw_genomes([g for g, _ in chosen], titles, args.output, scaling=scaling, input_size=args.input_size)
    print(f"wrote {args.output}")
    return 0


def run_report(args) -> int:
    """Write the study report (plots, best genomes, index.html)."""
    from visualize.report import write_report

    study = study_from_args(args)
    verdict = recorded_verdict(args)
    text = ""
    if verdict is not None:
        from nas.confirm import format_verdict

        text = format_verdict(verdict)
    path = write_report(study, args.out, top=args.top, verdict=verdict, verdict_text=text)
    print(f"wrote {path}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``spinenas draw`` and ``spinenas report``."""
    draw = add_command(subparsers, "draw", run_draw, "draw a genome's permutation diagram (or write its graph)",
                       "Draw one genome, or several side by side: blocks left to right in build order at the "
                       "height of their level, connections as curves.")
    add_study_options(draw, file_help="experiment file, with --trial (or give --storage and --study-name)")
    draw.add_argument("--model-id", help="SpineNet-ID or mobile-ID (its genome; the title costs it at that scaling)")
    draw.add_argument("--genome", action="append", metavar="FILE",
                      help="a genome file, or spinenet-49 / r50-like / spinenet-mobile-49; repeat to draw side by side")
    draw.add_argument("--trial", type=int, metavar="N", help="the genome of trial N of a study")
    draw.add_argument("-o", "--output", required=True, help="PNG, SVG or PDF (or the graph file with --format)")
    draw.add_argument("--format", choices=["graphml", "dot"], help="write the graph instead of a picture")
    draw.add_argument("--title", help="title above the diagram (one genome only; default: its name)")
    draw.add_argument("--input-size", type=positive_int, default=640, help="image size for the cost in the title")

    report = add_command(subparsers, "report", run_report, "write a study's plots and best genomes as one HTML page",
                         "Write index.html with the top trials, diagrams of the best genome (or the Pareto "
                         "front), the objective against multiply-adds and Optuna's plots; given the experiment "
                         "FILE of a confirmed search, also the confirmation's verdict and its runs as dots.")
    add_study_options(report)
    report.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and its images")
    report.add_argument("--top", type=positive_int, default=10, help="rows in the table of top trials (default 10)")
