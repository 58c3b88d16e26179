"""``spinenas train``: train one genome on a proxy task and write its metrics."""

from __future__ import annotations

import json

from nas.arguments import UserError, add_command, output_folder
from nas.commands.common import (add_data_option, check_data_folder, data_overrides, genome_from_arg,
                                 quiet_tensorflow)


def run(args) -> int:
    """Train, evaluate, and write metrics.json, a checkpoint and TensorBoard logs to ``--out``."""
    from nas.experiment import load_train_config
    from nas.tasks import get_task
    from nas.tasks.base import TrainingDiverged
    from spinenet.specs import SPINENET_49, scaling_for

    base = {}
    if args.model_id:
        try:
            base = scaling_for(args.model_id)
        except ValueError as err:
            raise UserError(str(err)) from None
    genome = genome_from_arg(args.genome) if args.genome else SPINENET_49
    overrides = [*(args.set or ()), *data_overrides(args)]
    config = load_train_config(args.config, overrides, base=base, task=args.task)
    task = get_task(config.task.name)
    if args.evaluate_on != "val":  # score the held-out split once training ends (it is never trained on)
        try:
            held_out = task.evaluate_on(config, args.evaluate_on)
        except ValueError as err:
            raise UserError(str(err)) from None
        config = load_train_config(args.config, [*overrides, *held_out], base=base, task=args.task)
    check_data_folder(args, task, config.task)  # the splits this run reads, the held-out one included
    output_folder(args.out)  # fail now, not after training
    quiet_tensorflow()
    print(f"training genome {genome.fingerprint} on the {task.name} task with {config.model}")
    try:
        metrics = task.train_and_evaluate(genome, config, out_dir=args.out, progress=not args.quiet)
    except TrainingDiverged as err:
        raise UserError(str(err)) from None
    summary = {k: metrics[k] for k in (*task.metrics, "params", "wall_time_s") if k in metrics}
    print(json.dumps(summary, indent=None))
    print(f"wrote metrics.json, checkpoint.weights.h5 and tensorboard/ to {args.out}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``spinenas train``."""
    from nas.tasks import task_names

    parser = add_command(
        subparsers, "train", run, "train a genome on a proxy task (detection or classification) and score it",
        "Settings come from the defaults (the paper's proxy widths: x0.25, alpha 0.25), then --model-id's "
        "scaling, then --config, then --task, then --set and --data.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-id", help="train SpineNet-ID (its genome and scaling)")
    source.add_argument("--genome", metavar="FILE", help="train this genome (a YAML or JSON file, spinenet-49 "
                                                         "or r50-like)")
    parser.add_argument("--config", metavar="FILE", help="YAML with 'model' and 'task' sections (an experiment file works)")
    parser.add_argument("--task", choices=task_names(), help="the proxy task (default: the config's, else detection)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, e.g. task.training.epochs=2 (repeatable)")
    add_data_option(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="where metrics, checkpoint and logs go")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--evaluate-on", choices=["val", "test"], default="val",
                        help="the split training's evaluations score: val (default), or the held-out test split "
                             "(instances_test.json and test/, as spinenas data import writes them)")
