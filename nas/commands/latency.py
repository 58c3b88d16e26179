"""``spinenas latency``: measure and predict the latency of genomes' deployed models on this machine.

The deployed model is what ``spinenas export --litert`` writes for the
experiment's task (for detection: backbone, head, box decoding and NMS),
at batch 1. ``--calibrate`` times every kernel kind the experiment's space
uses and keeps the table the predictor (and a latency-aware search) reads.
"""

from __future__ import annotations

import dataclasses
import json
import os

from nas.arguments import UserError, add_command, positive_int
from nas.commands.common import experiment_from_args, genome_from_arg, quiet_tensorflow


def run_latency(args) -> int:
    """Calibrate (``--calibrate``), then predict and/or measure each genome at each size."""
    from nas.experiment.schema import LatencyConfig
    from nas.search.latency import RUNTIMES, ExperimentLatency, LatencyUnavailable, calibrate, calibration_genomes

    experiment, _ = experiment_from_args(args)
    runtimes = _runtimes(args.runtime, RUNTIMES)
    base = experiment.search.latency or LatencyConfig()
    config = dataclasses.replace(base, threads=args.threads or base.threads, table=args.table or base.table)
    seeds = experiment.search_space.load_seed_genomes(os.path.dirname(experiment.source or "."))
    genomes = [genome_from_arg(g) for g in args.genomes] or seeds
    if not genomes:
        raise UserError("no genome: name GENOME files (or spinenet-49, spinenet-mobile-49), or give the experiment "
                        "seed_genomes")
    num_classes = args.num_classes or _num_classes(experiment)
    sizes = args.input_size or [config.input_size or experiment.task.data.image_size]
    meters = [ExperimentLatency(experiment.task_plugin, experiment.train_config, num_classes, config, input_size=s)
              for s in sizes]
    for meter in meters:
        for genome in genomes:
            try:
                meter.kernels(genome)
            except ValueError as err:
                raise UserError(f"genome {genome.fingerprint} at {meter.input_size} px: {err}") from None
    quiet_tensorflow()
    if args.calibrate:
        pool = calibration_genomes(experiment.search_space.build(), [*seeds, *genomes], args.genomes_to_time,
                                   experiment.seed)
        calibrate(meters, pool, models=args.models, log=print if not args.json else (lambda _: None),
                  progress=not args.json, repeats=args.repeats)
    try:
        rows = [_row(meter, genome, runtimes, args) for meter in meters for genome in genomes]
    except LatencyUnavailable as err:
        raise UserError(str(err)) from None
    if args.json:
        print(json.dumps({"threads": config.threads, "num_classes": num_classes, "task": experiment.task.name,
                          "rows": rows}, indent=1))
    else:
        print(_format(rows, config.threads))
    return 0


def _row(meter, genome, runtimes, args) -> dict:
    row = {"genome": genome.fingerprint, "family": genome.family, "input_size": meter.input_size}
    table = meter.load_table(missing_ok=True)
    if table is not None:
        prediction = meter.predict(genome)
        row["predicted_ms"] = prediction.ms
        row["estimated_kernels"] = prediction.estimated
    if not args.predict_only:
        for runtime, timing in meter.measure(genome, runtimes, repeats=args.repeats).items():
            row[runtime] = timing.to_dict()
    return row


def _format(rows: list, threads: int) -> str:
    lines = [f"batch 1, {threads} LiteRT thread(s); median ms (interquartile range) of repeated runs"]
    head = f"{'genome':<17} {'family':<9} {'px':>4}  {'predicted':>10}  {'LiteRT':>16}  {'TensorFlow':>16}"
    lines += [head, "-" * len(head)]
    for row in rows:
        predicted = f"{row['predicted_ms']:.2f}" if "predicted_ms" in row else "no table"
        if row.get("estimated_kernels"):
            predicted += "*"
        cells = [f"{row[r]['median_ms']:.2f} ({row[r]['spread_ms']:.2f})" if r in row else "-"
                 for r in ("litert", "tensorflow")]
        lines.append(f"{row['genome']:<17} {row['family']:<9} {row['input_size']:>4}  {predicted:>10}  "
                     f"{cells[0]:>16}  {cells[1]:>16}")
    if any(r.get("estimated_kernels") for r in rows):
        lines.append("* some kernels were not in the table and were estimated; --calibrate times them")
    return "\n".join(lines)


def _runtimes(text: str, known) -> tuple:
    chosen = tuple(r.strip() for r in text.split(",") if r.strip())
    bad = [r for r in chosen if r not in known]
    if bad or not chosen:
        raise UserError(f"--runtime {text!r}: choose from {', '.join(known)} (comma-separated)")
    return chosen


def _num_classes(experiment) -> int:
    summary = experiment.task_plugin.prepare_data(experiment.task, progress=False)
    return summary.num_classes


def add_parser(subparsers) -> None:
    """Register ``spinenas latency``."""
    parser = add_command(
        subparsers, "latency", run_latency, "measure and predict deployed latency on this machine",
        "Time each GENOME's deployed model (the experiment task's whole inference model, batch 1) under LiteRT "
        "and TensorFlow, with warm-up and the median and spread of repeated runs, and predict it from this "
        "machine's kernel calibration table. --calibrate measures (or completes) that table first.")
    parser.add_argument("genomes", nargs="*", metavar="GENOME",
                        help="genome files or spinenet-49 / spinenet-mobile-49 (default: the experiment's seeds)")
    parser.add_argument("--experiment", dest="file", required=True, metavar="FILE",
                        help="the experiment whose task, model scaling and head are deployed")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of the experiment")
    parser.add_argument("--input-size", type=positive_int, action="append", metavar="PX",
                        help="deploy size in pixels (repeatable; default search.latency.input_size, else the "
                             "task's image size)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="LiteRT threads (default search.latency.threads, else 1)")
    parser.add_argument("--runtime", default="litert,tensorflow", help="runtimes to time (default litert,tensorflow)")
    parser.add_argument("--repeats", type=positive_int, default=20, metavar="N", help="timed runs (default 20)")
    parser.add_argument("--predict-only", action="store_true", help="only the prediction (no model is built)")
    parser.add_argument("--num-classes", type=positive_int, metavar="N",
                        help="classes of the head (default: the task's prepared data)")
    parser.add_argument("--table", metavar="FILE", help="the calibration table (default: this machine's under "
                                                        "~/.cache/spinenas/latency/)")
    calibration = parser.add_argument_group("calibration")
    calibration.add_argument("--calibrate", action="store_true",
                             help="time the kernels the table lacks (of the genomes, the seeds and --genomes random "
                                  "genomes of the experiment's space) and --models whole models, then go on")
    calibration.add_argument("--genomes", dest="genomes_to_time", type=int, default=30, metavar="N",
                             help="random genomes whose kernels are timed (default 30)")
    calibration.add_argument("--models", type=int, default=3, metavar="N",
                             help="whole models timed per size to scale kernel sums (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
