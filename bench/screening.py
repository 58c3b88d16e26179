"""Benchmark zero-cost screening: proxy speed per genome, and proxies and search strategies on a recorded table.

Run by hand:

    python bench/screening.py --speed                       # seconds per proxy per genome at proxy widths
    python bench/screening.py --table runs/fidelity/records.jsonl --fidelity short --long-fidelity long

The table is ``spinenas fidelity``'s JSON lines (one record per genome,
fidelity and seed; read with :func:`nas.fidelity.load_genomes`). Proxy scores of its
genomes are computed once with the experiment's model and task settings and
cached beside it (``<table>.proxies.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from nas.cpu import onednn_settings, use_settings  # noqa: E402  (before TensorFlow loads, as trials do)

use_settings(onednn_settings())


def speed(experiment: str, genomes: int, seed: int) -> None:
    """Score SpineNet-49 and random genomes of the default space; print mean and max seconds per proxy."""
    from nas.experiment import load_train_config
    from nas.screening import PROXIES, score_genomes
    from search_spaces.space import ScalePermutedSpace
    from spinenet import SPINENET_49

    config = load_train_config(experiment)
    pool = [SPINENET_49] + [ScalePermutedSpace().random_genome(random.Random(seed + i)) for i in range(genomes - 1)]
    timings: dict = {}
    score_genomes(pool[:1], config, list(PROXIES), seed=seed)  # warm-up: TensorFlow's first calls trace and allocate
    score_genomes(pool, config, [*PROXIES, "params", "multiply_adds"], seed=seed, timings=timings)
    size = config.task.data.image_size
    print(f"{len(pool)} genomes, {config.task.name} at {size}x{size}, filter_size_scale "
          f"{config.model.filter_size_scale}, batch 8, {os.cpu_count()} cores")
    for name, values in timings.items():
        print(f"  {name:<10} mean {statistics.mean(values):5.2f} s   max {max(values):5.2f} s")
    total = [sum(v[i] for v in timings.values()) for i in range(len(pool))]
    print(f"  {'all':<10} mean {statistics.mean(total):5.2f} s   max {max(total):5.2f} s (build plus every proxy)")


def table(path: str, experiment: str, metric: str, fidelity: str, long_fidelity, repetitions: int, seed: int) -> None:
    """Correlations and the pool-based search comparison on a recorded table."""
    from nas.experiment import load_train_config
    from nas.screening import PROXIES, score_genomes
    from nas.fidelity.proxies import format_report, judge
    from nas.fidelity import load_genomes
    from search_spaces.features import feature_names, genome_features

    entries = load_genomes(path, metric)
    cache = f"{path}.proxies.json"
    scores = json.load(open(cache)) if os.path.exists(cache) else {}
    missing = [e for e in entries if e.fingerprint not in scores]
    if missing:
        rows = score_genomes([e.genome for e in missing], load_train_config(experiment), list(PROXIES), seed=seed)
        scores.update({e.fingerprint: row for e, row in zip(missing, rows)})
        json.dump(scores, open(cache, "w"))
    columns = {name: [scores[e.fingerprint][name] for e in entries] for name in PROXIES}
    names = feature_names(entries[0].genome)
    features = [[genome_features(e.genome, e.cost(fidelity, "params"), e.cost(fidelity, "multiply_adds"))[n]
                 for n in names] for e in entries]
    report = judge(entries, columns, fidelity, long_fidelity, features, repetitions, seed)
    print(format_report(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", action="store_true", help="time every proxy per genome")
    parser.add_argument("--genomes", type=int, default=5, help="genomes timed by --speed (default 5)")
    parser.add_argument("--table", help="a recorded JSON-lines table (spinenas fidelity)")
    parser.add_argument("--experiment", default="experiments/proxy_shapes.yaml",
                        help="model and task settings the proxies build (default: the proxy task)")
    parser.add_argument("--metric", default="AP")
    parser.add_argument("--fidelity", help="the fidelity whose metric is the objective (default: the first seen)")
    parser.add_argument("--long-fidelity", help="a longer fidelity to correlate against too")
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.speed:
        speed(args.experiment, args.genomes, args.seed)
    if args.table:
        fidelity = args.fidelity
        if fidelity is None:
            with open(args.table, encoding="utf-8") as handle:
                fidelity = json.loads(next(line for line in handle if line.strip()))["fidelity"]
        table(args.table, args.experiment, args.metric, fidelity, args.long_fidelity, args.repetitions, args.seed)
    if not (args.speed or args.table):
        parser.error("give --speed and/or --table FILE")


if __name__ == "__main__":
    main()
