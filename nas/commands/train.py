"""``spinenas train``: train one genome on the proxy task and write its COCO metrics."""

from __future__ import annotations

import json

from nas.commands.common import UserError, output_folder, quiet_tensorflow
from search_spaces.genome import Genome


def run(args) -> int:
    """Train, evaluate, and write metrics.json, a checkpoint and TensorBoard logs to ``--out``."""
    from nas.experiment import load_train_config
    from spinenet.specs import SPINENET_49, scaling_for

    base = {}
    if args.model_id:
        try:
            scaling = scaling_for(args.model_id)
        except ValueError as err:
            raise UserError(str(err)) from None
        base = {k: scaling[k] for k in ("filter_size_scale", "resample_alpha", "block_repeats",
                                        "endpoints_num_filters")}
    genome = Genome.load(args.genome) if args.genome else SPINENET_49
    config = load_train_config(args.config, args.set or (), base=base)
    output_folder(args.out)  # fail now, not after training
    quiet_tensorflow()
    from nas.tasks.detection.train import TrainingDiverged, train_and_evaluate

    print(f"training genome {genome.fingerprint} with {config.model} on {config.task.data.resolved_root}")
    try:
        metrics = train_and_evaluate(genome, config, out_dir=args.out, progress=not args.quiet)
    except TrainingDiverged as err:
        raise UserError(str(err)) from None
    summary = {k: metrics[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "loss", "params", "wall_time_s")}
    print(json.dumps(summary, indent=None))
    print(f"wrote metrics.json, checkpoint.weights.h5 and tensorboard/ to {args.out}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``spinenas train``."""
    parser = subparsers.add_parser(
        "train", help="train a genome as a RetinaNet detector and score it by COCO AP",
        description="Settings come from the defaults (the paper's proxy: width x0.25, alpha 0.25, head 64 wide "
                    "is set in experiments/proxy_shapes.yaml), then --model-id's scaling, then --config, "
                    "then --set.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-id", help="train SpineNet-ID (its genome and scaling)")
    source.add_argument("--genome", metavar="FILE", help="train this genome (YAML or JSON)")
    parser.add_argument("--config", metavar="FILE", help="YAML with 'model' and 'task' sections (an experiment file works)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, e.g. task.training.epochs=2 (repeatable)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where metrics, checkpoint and logs go")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)
