"""Benchmark one proxy trial: where its wall time goes, and training throughput.

Run by hand: ``python bench/proxy.py [--set task.training.epochs=2 ...]``.
Target: at least 70% of a trial's wall time in training and evaluation steps.
"""

from __future__ import annotations

import argparse
import os
import time

started = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from nas.experiment import load_train_config  # noqa: E402
from nas.tasks.detection.dataset import prepare_data  # noqa: E402
from nas.tasks.detection.train import train_and_evaluate  # noqa: E402
from spinenet import SPINENET_49  # noqa: E402

imported = time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/proxy_shapes.yaml")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    config = load_train_config(args.config, args.set)
    prepare_data(config.task.data)  # generate the dataset outside the timed trial
    trial_start = time.perf_counter()
    metrics = train_and_evaluate(SPINENET_49, config)
    wall = time.perf_counter() - trial_start + imported
    timing = {"import": imported, **metrics["timing"]}
    timing.pop("total")
    print(f"SpineNet-49 proxy trial: AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  "
          f"({metrics['params']:,} params, {metrics['steps']} steps)")
    print(f"wall time {wall:.1f} s (import included)")
    for name, seconds in timing.items():
        print(f"  {name:<9} {seconds:7.1f} s  {seconds / wall:6.1%}")
    useful = (timing["train"] + timing["evaluate"]) / wall
    print(f"training + evaluation steps: {useful:.1%} of wall time (target 70%)")
    print(f"training throughput: {metrics['train_images_per_s']:.1f} images/s at "
          f"{config.task.data.image_size}x{config.task.data.image_size}, batch {config.task.training.batch_size}")


if __name__ == "__main__":
    main()
