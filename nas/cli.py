"""The ``spinenas`` command line.

Every user error (a broken genome, an unknown model id, an unreadable file)
is printed as one ``spinenas: error: ...`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from search_spaces.genome import Genome, GenomeError

EXIT_USAGE = 2


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def _input_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, got {text!r}")
    return parts[0], parts[1]


def _add_decode_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("architecture")
    source.add_argument("--model-id", help="SpineNet scaling: 49S, 49, 96, 143 or 190 (default 49)")
    source.add_argument("--genome", metavar="FILE", help="decode this genome (YAML or JSON) instead of SpineNet-49")
    scaling = parser.add_argument_group("scaling (override the model id's values)")
    scaling.add_argument("--filter-size-scale", type=float)
    scaling.add_argument("--resample-alpha", type=float)
    scaling.add_argument("--block-repeats", type=int)
    scaling.add_argument("--endpoints-num-filters", type=int)
    scaling.add_argument("--activation", default="relu", help="relu (default) or swish")


def _decode_settings(args) -> tuple[Genome, dict, str]:
    """The genome, decode keyword arguments and a display name chosen by the flags."""
    from spinenet.specs import SPINENET_49, scaling_for

    try:
        settings = scaling_for(args.model_id or "49")
    except ValueError as err:
        raise UserError(str(err)) from None
    for key in ("filter_size_scale", "resample_alpha", "block_repeats", "endpoints_num_filters"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["activation"] = args.activation
    if args.genome:
        genome = Genome.load(args.genome)
        title = os.path.basename(args.genome)
    else:
        genome = SPINENET_49
        title = f"SpineNet-{(args.model_id or '49').upper()}"
    return genome, settings, title


def _cmd_decode(args) -> int:
    genome, settings, title = _decode_settings(args)
    height, width = args.input_size
    from spinenet.cost import network_cost
    from spinenet.scaling import check_input_size

    check_input_size(genome, (height, width))  # fail before TensorFlow is imported
    try:
        cost = network_cost(genome, (height, width), **{k: v for k, v in settings.items() if k != "activation"})
        multiply_adds = cost.multiply_adds
    except ValueError:
        multiply_adds = None  # a registered block fn without cost functions
    _quiet_tensorflow()
    from spinenet.decoder import decode

    model = decode(genome, input_shape=(height, width, 3), **settings)
    trainable = int(sum(v.shape.num_elements() for v in model.trainable_weights))
    endpoints = {level: list(shape[1:]) for level, shape in sorted(model.output_shape.items(), key=lambda kv: int(kv[0]))}
    report = {
        "name": title,
        "input_size": [height, width],
        "params": int(model.count_params()),
        "trainable_params": trainable,
        "multiply_adds": multiply_adds,
        "endpoints": endpoints,
        "fingerprint": genome.fingerprint,
        "scaling": settings,
    }
    if args.save:
        try:
            model.save(args.save)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot save model to {args.save}: {err}") from None
        report["saved"] = args.save
    if args.json:
        print(json.dumps(report))
    else:
        print(_summary_text(report, genome, model))
    return 0


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


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``spinenas`` subcommand."""
    parser = argparse.ArgumentParser(prog="spinenas", description="Search and decode scale-permuted backbones.")
    sub = parser.add_subparsers(dest="command", required=True)
    decode = sub.add_parser("decode", help="decode a genome into a Keras backbone and summarise it")
    _add_decode_options(decode)
    decode.add_argument("--input-size", type=_input_size, default=(640, 640), metavar="SIZE",
                        help="SIZE or HEIGHTxWIDTH, divisible by 2**deepest level (default 640)")
    decode.add_argument("--save", metavar="OUT.keras", help="write the model in the Keras format")
    decode.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    decode.set_defaults(handler=_cmd_decode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spinenas`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (UserError, GenomeError, ValueError, OSError) as err:
        print(f"spinenas: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("spinenas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
