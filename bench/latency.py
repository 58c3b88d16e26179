"""Deployed latency of SpineNet-49 and Mobile SpineNet-49/49S/49XS detectors on this CPU, LiteRT and TensorFlow.

Run by hand, on an idle machine where you can (from the repository root):

    python bench/latency.py                      # -> bench/results/latency.json

Each model is the RetinaNet detector ``spinenas export --litert`` deploys
(backbone, head, box decoding and NMS; 90 classes) at its published
scaling: SpineNet-49 with a 256-filter, 4-conv head and relu; the Mobile
models with a separable head as wide as their endpoints and swish. Every
model is timed at each ``--sizes`` px, batch 1, under LiteRT
(``--threads``) and under TensorFlow (its own thread pools), as
``spinenas latency`` does: warm-up, then the median and interquartile
range of ``--repeats`` runs. With the predictor's table
(``bench/results/latency_table.json``, written by
``bench/latency_predictor.py``), the prediction is recorded beside each.
Rows are appended as they finish; a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OUT = "bench/results/latency.json"
TABLE = "bench/results/latency_table.json"
MODELS = {
    "SpineNet-49": ("spinenet-49", ["search_space.family=spinenet", "search_space.init_block_fn=bottleneck",
                                    "search_space.block_fns=[bottleneck,residual]", "search_space.block_options={}",
                                    "search_space.intermediate_levels=[2,3,3,3,4,4,4,4,5,5]",
                                    "search_space.seed_genomes=[spinenet-49]", "model.filter_size_scale=1.0",
                                    "model.resample_alpha=0.5", "model.endpoints_num_filters=256",
                                    "model.activation=relu", "task.head.num_filters=256", "task.head.num_convs=4",
                                    "task.head.separable=false"]),
    "Mobile SpineNet-49": ("spinenet-mobile-49", ["model.filter_size_scale=1.0", "model.endpoints_num_filters=48",
                                                  "task.head.num_filters=48"]),
    "Mobile SpineNet-49S": ("spinenet-mobile-49", ["model.filter_size_scale=0.65", "model.endpoints_num_filters=40",
                                                   "task.head.num_filters=40"]),
    "Mobile SpineNet-49XS": ("spinenet-mobile-49", ["model.filter_size_scale=0.6", "model.endpoints_num_filters=24",
                                                    "task.head.num_filters=24"]),
}
NUM_CLASSES = 90


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[384, 640])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from nas.experiment import load_experiment
    from nas.experiment.schema import LatencyConfig
    from nas.search.latency import ExperimentLatency, LatencyUnavailable
    from spinenet.specs import resolve_genome

    rows = {}
    if os.path.exists(OUT):
        with open(OUT, encoding="utf-8") as handle:
            rows = {(r["model"], r["input_size"]): r for r in json.load(handle)["rows"]}
    for name, (genome_name, overrides) in MODELS.items():
        experiment = load_experiment("experiments/mobile_latency.yaml", overrides)
        genome = resolve_genome(genome_name)
        for size in args.sizes:
            if (name, size) in rows:
                continue
            meter = ExperimentLatency(experiment.task_plugin, experiment.train_config, NUM_CLASSES,
                                      LatencyConfig(threads=args.threads, table=TABLE), input_size=size)
            timings = meter.measure(genome, ("litert", "tensorflow"), repeats=args.repeats)
            kernels = meter.kernels(genome)
            row = {"model": name, "genome": genome.fingerprint, "input_size": size,
                   "multiply_adds": sum(k.multiply_adds for k in kernels if k.op in ("conv", "dwconv", "dense")),
                   **{runtime: timing.to_dict() for runtime, timing in timings.items()},
                   "load": os.getloadavg()[0]}
            try:
                prediction = meter.predict(genome)
                row.update(predicted_ms=prediction.ms, estimated_kernels=prediction.estimated)
            except LatencyUnavailable:
                pass
            rows[(name, size)] = row
            with open(f"{OUT}.partial", "w", encoding="utf-8") as handle:
                json.dump({"command": "python bench/latency.py " + " ".join(sys.argv[1:]), "threads": args.threads,
                           "repeats": args.repeats, "num_classes": NUM_CLASSES, "rows": list(rows.values())},
                          handle, indent=1)
            os.replace(f"{OUT}.partial", OUT)
            print(f"{name} @ {size}: LiteRT {row['litert']['median_ms']:.1f} ms, TensorFlow "
                  f"{row['tensorflow']['median_ms']:.1f} ms, {row['multiply_adds'] / 1e9:.2f} G multiply-adds"
                  + (f", predicted {row['predicted_ms']:.1f} ms" if "predicted_ms" in row else ""), flush=True)


if __name__ == "__main__":
    main()
