"""``spinenas score``: zero-cost proxy scores of genomes on the task's decoded model and one real minibatch."""

from __future__ import annotations

import json

from nas.arguments import UserError, add_command, positive_int
from nas.commands.common import genome_from_arg


def run(args) -> int:
    """Score each ``--genome`` with every ``--proxy`` (default: all) and print a table or JSON."""
    from nas.config import ConfigError
    from nas.experiment import load_train_config
    from nas.screening import proxy_names, score_genomes

    genomes = [genome_from_arg(entry) for entry in args.genome]
    proxies = args.proxy or proxy_names()
    try:
        config = load_train_config(args.experiment, args.set or ())
        rows = score_genomes(genomes, config, proxies, seed=args.seed, batch_size=args.batch_size)
    except ConfigError as err:
        raise UserError(str(err)) from None
    if args.json:
        print(json.dumps([{"genome": entry, "fingerprint": g.fingerprint, "scores": row}
                          for entry, g, row in zip(args.genome, genomes, rows)]))
        return 0
    names = list(rows[0]) if rows else []
    width = max(12, *(len(e) for e in args.genome))
    print(f"{'genome':<{width}} " + " ".join(f"{n:>14}" for n in names))
    for entry, row in zip(args.genome, rows):
        print(f"{entry:<{width}} " + " ".join(f"{row[n]:>14.6g}" for n in names))
    return 0


def add_parser(subparsers) -> None:
    """Register ``spinenas score``."""
    parser = add_command(
        subparsers, "score", run, "score genomes with zero-cost proxies (no training)",
        "Build each genome's task model (backbone plus head) at the experiment's settings and score it on one "
        "minibatch of the task's training data with zero-cost proxies. Higher predicts better. 'ensemble' is "
        "the mean rank of its members among the genomes given.")
    parser.add_argument("--genome", action="append", required=True, metavar="FILE|NAME",
                        help="a genome file or reference name (spinenet-49, r50-like); repeatable")
    parser.add_argument("--experiment", metavar="FILE",
                        help="experiment or train config whose model and task sections to use (default: the defaults)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value (repeatable)")
    parser.add_argument("--proxy", action="append", metavar="NAME", help="a proxy to run (repeatable; default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the minibatch and the noise")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="minibatch size (default 8)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
