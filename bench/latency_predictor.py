"""How well the latency predictor predicts measured LiteRT latency, on random genomes it was not calibrated on.

Run by hand, on an idle machine where you can (from the repository root):

    python bench/latency_predictor.py                  # calibrate, then measure the held-out genomes
    python bench/latency_predictor.py --report         # the summary of what is recorded so far

Two settings, each at two deploy sizes: Mobile SpineNet's space and
scaling (``experiments/mobile_latency.yaml``: the RetinaNet detector with
its separable head, swish) and SpineNet's space at SpineNet-49S's scaling
(a RetinaNet head of 128 filters, relu). Calibration times every kernel of
the seed and ``--calibration-genomes`` random genomes per setting and size
(random seed 0) and ``--models`` whole models, into a table of this
benchmark's own. The held-out genomes are ``--genomes`` others per setting
(random seed 1, none of the calibration's): each deployed detector (backbone,
head, box decoding, NMS; 90 classes) is converted to LiteRT, timed at
batch 1 on one thread (median of ``--repeats`` runs after warm-up), and
predicted. The summary: the share predicted within +-10% (the issue's
goal is 95%), the error quantiles, Kendall's tau between predicted and
measured, and the same for a multiply-adds baseline (latency proportional
to multiply-adds, fitted on the calibration models) for comparison.
Each measured genome is appended to the results as it finishes, so a killed
run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OUT = "bench/results/latency_predictor.json"
TABLE = "bench/results/latency_table.json"
SETTINGS = {
    "mobile": ("experiments/mobile_latency.yaml", []),
    "spinenet-49S": ("experiments/mobile_latency.yaml", [
        "search_space.family=spinenet", "search_space.init_block_fn=bottleneck",
        "search_space.block_fns=[bottleneck,residual]", "search_space.block_options={}",
        "search_space.intermediate_levels=[2,3,3,3,4,4,4,4,5,5]", "search_space.seed_genomes=[spinenet-49]",
        "model.filter_size_scale=0.65", "model.resample_alpha=0.5", "model.endpoints_num_filters=128",
        "model.activation=relu", "task.head.num_filters=128", "task.head.separable=false"]),
}
NUM_CLASSES = 90


def meters(setting: str, sizes, threads: int):
    from nas.experiment import load_experiment
    from nas.experiment.schema import LatencyConfig
    from nas.search.latency import ExperimentLatency

    path, overrides = SETTINGS[setting]
    experiment = load_experiment(path, overrides)
    config = LatencyConfig(threads=threads, table=TABLE)
    return experiment, [ExperimentLatency(experiment.task_plugin, experiment.train_config, NUM_CLASSES, config,
                                          input_size=size) for size in sizes]


def run(args) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from nas.search.latency import calibrate, calibration_genomes

    done = _load()
    for setting in SETTINGS:
        experiment, group = meters(setting, args.sizes, args.threads)
        space = experiment.search_space.build()
        seeds = experiment.search_space.load_seed_genomes("experiments")
        pool = calibration_genomes(space, seeds, args.calibration_genomes, 0)
        calibrate(group, pool, models=args.models, repeats=args.repeats)
        seen = {g.fingerprint for g in pool}
        held_out = [g for g in calibration_genomes(space, [], args.genomes + len(seen), 1) if g.fingerprint not in seen]
        for meter in group:
            for genome in held_out[: args.genomes]:
                key = f"{setting}/{meter.input_size}/{genome.fingerprint}"
                if key in done:
                    continue
                started = time.perf_counter()
                measured = meter.measure(genome, ("litert",), repeats=args.repeats)["litert"]
                prediction = meter.predict(genome)
                kernels = meter.kernels(genome)
                record = {"key": key, "setting": setting, "input_size": meter.input_size,
                          "genome": genome.fingerprint, "measured_ms": measured.median_ms,
                          "spread_ms": measured.spread_ms, "predicted_ms": prediction.ms,
                          "kernel_sum_ms": prediction.kernel_sum_ms, "kernels": prediction.kernels,
                          "estimated_kernels": prediction.estimated,
                          "multiply_adds": sum(k.multiply_adds for k in kernels if k.op in ("conv", "dwconv", "dense")),
                          "error": prediction.ms / measured.median_ms - 1, "load": os.getloadavg()[0],
                          "seconds": time.perf_counter() - started}
                done[key] = record
                _save(done, args)
                print(f"{key}: measured {measured.median_ms:.2f} ms, predicted {prediction.ms:.2f} ms "
                      f"({100 * record['error']:+.1f}%), load {record['load']:.1f}", flush=True)
    print(json.dumps(summary(done, args.threads), indent=1))


def summary(done: dict, threads: int) -> dict:
    """Share within +-10%, error quantiles and rank agreement, overall and per setting and size."""
    from scipy.stats import kendalltau

    from spinenet.latency.calibration import load_table

    table = load_table(TABLE, threads)
    # The multiply-adds baseline: ms = c * multiply-adds, c from the calibration's whole models.
    records = list(done.values())
    groups = {"all": records}
    for r in records:
        groups.setdefault(f"{r['setting']} @ {r['input_size']}", []).append(r)
    out = {}
    for name, rows in groups.items():
        errors = [r["error"] for r in rows]
        # Per group, the baseline's constant is fitted on the group's own measurements' median ratio: the most
        # favourable a multiply-adds model can be (a search would have to fix it beforehand).
        ratio = statistics.median(r["measured_ms"] / r["multiply_adds"] for r in rows)
        baseline = [ratio * r["multiply_adds"] / r["measured_ms"] - 1 for r in rows]
        out[name] = {
            "genomes": len(rows),
            "within_10pct": sum(abs(e) <= 0.10 for e in errors) / len(rows),
            "within_5pct": sum(abs(e) <= 0.05 for e in errors) / len(rows),
            "median_abs_error": statistics.median(abs(e) for e in errors),
            "max_abs_error": max(abs(e) for e in errors),
            "mean_error": statistics.fmean(errors),
            "kendall_tau_predicted": kendalltau([r["predicted_ms"] for r in rows],
                                                [r["measured_ms"] for r in rows]).statistic,
            "multiply_adds_baseline_within_10pct": sum(abs(e) <= 0.10 for e in baseline) / len(rows),
            "kendall_tau_multiply_adds": kendalltau([r["multiply_adds"] for r in rows],
                                                    [r["measured_ms"] for r in rows]).statistic,
            "estimated_kernel_share": sum(r["estimated_kernels"] for r in rows) / sum(r["kernels"] for r in rows),
            "median_load": statistics.median(r["load"] for r in rows),
        }
    out["calibration"] = {"kernels": len(table.kernels), "models": len(table.models),
                          "machine": table.identity}
    return out


def _load() -> dict:
    if not os.path.exists(OUT):
        return {}
    with open(OUT, encoding="utf-8") as handle:
        return {r["key"]: r for r in json.load(handle)["records"]}


def _save(done: dict, args) -> None:
    data = {"command": "python bench/latency_predictor.py " + " ".join(sys.argv[1:]),
            "settings": {k: {"experiment": v[0], "overrides": v[1]} for k, v in SETTINGS.items()},
            "num_classes": NUM_CLASSES, "threads": args.threads, "repeats": args.repeats,
            "records": list(done.values())}
    with open(f"{OUT}.partial", "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
    os.replace(f"{OUT}.partial", OUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 384])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--genomes", type=int, default=20, help="held-out genomes per setting and size")
    parser.add_argument("--calibration-genomes", type=int, default=30)
    parser.add_argument("--models", type=int, default=3, help="whole models timed per size at calibration")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--report", action="store_true", help="only print the summary of what is recorded")
    args = parser.parse_args()
    if args.report:
        print(json.dumps(summary(_load(), args.threads), indent=1))
        return
    run(args)


if __name__ == "__main__":
    main()
