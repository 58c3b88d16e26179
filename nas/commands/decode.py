"""``spinenas decode``: build a genome's backbone (optionally with a RetinaNet head) and summarise it."""

from __future__ import annotations

import argparse
import json
import os

from nas.arguments import UserError, add_command, non_negative_int, positive_float, positive_int
from nas.commands.common import genome_from_arg, quiet_tensorflow
from search_spaces.genome import Genome


def input_size(text: str) -> tuple[int, int]:
    """Parse ``SIZE`` or ``HEIGHTxWIDTH`` (an argparse type)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, got {text!r}")
    return parts[0], parts[1]


def add_architecture_options(parser: argparse.ArgumentParser) -> None:
    """The flags choosing a genome and its scaling."""
    source = parser.add_argument_group("architecture")
    source.add_argument("--model-id", help="SpineNet scaling: 49S, 49, 96, 143 or 190 (default 49), "
                                           "or Mobile SpineNet: mobile-49, mobile-49S, mobile-49XS")
    source.add_argument("--genome", metavar="FILE", help="decode this genome (a YAML or JSON file, spinenet-49, "
                                                         "r50-like or spinenet-mobile-49) instead of SpineNet-49")
    scaling = parser.add_argument_group("scaling (override the model id's values)")
    scaling.add_argument("--filter-size-scale", type=positive_float, metavar="X",
                         help="multiply every block's width by X (49: 1.0)")
    scaling.add_argument("--resample-alpha", type=positive_float, metavar="X",
                         help="width factor of the resampling connections (49: 0.5)")
    scaling.add_argument("--block-repeats", type=positive_int, metavar="N", help="repeat every block N times (49: 1)")
    scaling.add_argument("--endpoints-num-filters", type=positive_int, metavar="N",
                         help="channels of every output level (49: 256)")
    scaling.add_argument("--activation", help="relu (default) or swish (default for mobile-* ids)")


def decode_settings(args) -> tuple[Genome, dict, str]:
    """The genome, decode keyword arguments and a display name chosen by the flags."""
    from spinenet.specs import genome_for, scaling_for

    try:
        settings = scaling_for(args.model_id or "49")
    except ValueError as err:
        raise UserError(str(err)) from None
    mobile = (args.model_id or "").lower().startswith("mobile-")
    for key in ("filter_size_scale", "resample_alpha", "block_repeats", "endpoints_num_filters"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    # Mobile SpineNet's published configs use swish.
    settings["activation"] = args.activation or ("swish" if mobile else "relu")
    if args.genome:
        genome = genome_from_arg(args.genome)
        title = os.path.basename(args.genome)
    else:
        genome = genome_for(args.model_id or "49")
        model_id = (args.model_id or "49").upper()
        title = f"Mobile SpineNet-{model_id[len('MOBILE-'):]}" if mobile else f"SpineNet-{model_id}"
    return genome, settings, title


def run(args) -> int:
    """Decode and print the summary (or JSON)."""
    genome, settings, title = decode_settings(args)
    height, width = args.input_size
    from spinenet.cost import network_cost
    from spinenet.scaling import check_input_size

    check_input_size(genome, (height, width))  # fail before TensorFlow is imported
    try:
        cost = network_cost(genome, (height, width), **{k: v for k, v in settings.items() if k != "activation"})
        multiply_adds = cost.multiply_adds
    except ValueError:
        multiply_adds = None  # a registered block fn without cost functions
    quiet_tensorflow()
    from spinenet.decoder import decode

    model = decode(genome, input_shape=(height, width, 3), weights=args.weights or None, **settings)
    loaded = model.loaded_checkpoint
    backbone = model
    if args.head == "retinanet":
        model, multiply_adds = _with_retinanet(model, genome, settings, args, multiply_adds)
    trainable = int(sum(v.shape.num_elements() for v in model.trainable_weights))
    endpoints = {level: list(shape[1:]) for level, shape in
                 sorted(backbone.output_shape.items(), key=lambda kv: int(kv[0]))}
    report = {
        "name": title + (" + RetinaNet" if args.head == "retinanet" else ""),
        "input_size": [height, width],
        "params": int(model.count_params()),
        "trainable_params": trainable,
        "multiply_adds": multiply_adds,
        "endpoints": endpoints,
        "fingerprint": genome.fingerprint,
        "scaling": settings,
    }
    if args.head == "retinanet":
        report["backbone_params"] = int(backbone.count_params())
    if loaded is not None:
        report["weights"] = dict(loaded)  # a plain dict: Keras wraps the one it tracks on the model
    if args.save:
        try:
            model.save(args.save)
        except (OSError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise UserError(f"--save {args.save}: cannot save the model ({reason})") from None
        report["saved"] = args.save
    if args.json:
        print(json.dumps(report))
    else:
        print(_summary_text(report, genome, backbone))
    return 0


def _with_retinanet(backbone, genome, settings, args, backbone_madds):
    """The detector around ``backbone`` and its total multiply-adds (backbone + head), from the detection task."""
    from nas.experiment import load_train_config
    from nas.tasks import get_task

    if args.num_classes < 1:
        raise UserError(f"--num-classes must be positive, got {args.num_classes}")
    config = load_train_config(base=dict(settings), task="detection", overrides=[
        f"task.head.num_convs={args.head_num_convs}", f"task.head.num_filters={args.head_num_filters}",
        f"task.head.separable={str(args.head_separable).lower()}"])
    task = get_task("detection")
    detector = task.build_model(backbone, config, args.num_classes)
    head_cost = task.head_cost(genome, config, args.num_classes, input_size=args.input_size)
    total = None if backbone_madds is None else backbone_madds + head_cost.multiply_adds
    return detector, total


def add_parser(subparsers) -> None:
    """Register ``spinenas decode``."""
    parser = add_command(
        subparsers, "decode", run, "decode a genome into a Keras backbone and summarise it",
        "Build the Keras backbone of a genome (SpineNet-49 by default) at a scaling and print its parameters, "
        "multiply-adds, endpoint shapes and blocks; optionally with a RetinaNet head.")
    add_architecture_options(parser)
    parser.add_argument("--input-size", type=input_size, default=(640, 640), metavar="SIZE",
                        help="SIZE or HEIGHTxWIDTH, divisible by 2**deepest level (default 640)")
    parser.add_argument("--head", choices=["none", "retinanet"], default="none",
                        help="add a detection head and report the whole detector")
    parser.add_argument("--num-classes", type=positive_int, default=91, help="classes of the head (default 91, COCO)")
    parser.add_argument("--head-num-filters", type=positive_int, default=256, metavar="N",
                        help="width of the head's subnets (default 256)")
    parser.add_argument("--head-num-convs", type=non_negative_int, default=4, metavar="N",
                        help="3x3 convolutions in each subnet before its prediction layer (default 4; 0 allowed)")
    parser.add_argument("--head-separable", action="store_true",
                        help="depthwise-separable head convolutions (as published for Mobile SpineNet)")
    parser.add_argument("--weights", metavar="CKPT",
                        help="start the backbone from a TF Model Garden checkpoint of the same architecture and "
                             "scaling (a checkpoint prefix or its folder; the activation must be the one it was "
                             "trained with, e.g. --activation swish for the Model Garden's SpineNet COCO configs)")
    parser.add_argument("--save", metavar="OUT.keras", help="write the model in the Keras format")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _summary_text(report: dict, genome: Genome, model) -> str:
    """A readable summary: totals, endpoint shapes and one row per block."""
    block_params: dict[str, int] = {}
    for layer in model.layers:
        prefix = layer.name.split("_", 1)[0]
        block_params[prefix] = block_params.get(prefix, 0) + layer.count_params()
    madds = report["multiply_adds"]
    lines = [
        f"{report['name']} at {report['input_size'][0]}x{report['input_size'][1]}"
        f"  (fingerprint {report['fingerprint']})",
        f"  params:           {report['params']:,}",
        f"  trainable params: {report['trainable_params']:,}",
        f"  multiply-adds:    {madds / 1e9:.2f} G" if madds is not None else "  multiply-adds:    n/a",
        "  endpoints:",
    ]
    if "weights" in report:
        weights = report["weights"]
        lines.insert(4, f"  weights:          {weights['checkpoint']} ({weights['variables']} variables under "
                        f"{weights['prefix'] or 'the root'!r})")
    lines += [f"    level {lvl}: {'x'.join(str(d) for d in shape)}" for lvl, shape in report["endpoints"].items()]
    lines.append("")
    lines.append(f"  {'block':>5}  {'level':>5}  {'block fn':<11} {'inputs':<9} {'output':<6} {'merges':<8} {'params':>12}")
    graph = genome.resolve()
    for node in graph.nodes[genome.num_init_blocks:]:
        merges = ",".join(str(m) for m in node.merged) or "-"
        params = f"{block_params.get(f'block{node.block}', 0):,}" if node.live else "unused"
        lines.append(
            f"  {node.block:>5}  {node.level:>5}  {node.block_fn:<11} "
            f"{','.join(str(p) for p in node.parents):<9} {'yes' if node.is_output else '':<6} "
            f"{merges:<8} {params:>12}"
        )
    return "\n".join(lines)


