"""Benchmark Mobile SpineNet-49 against SpineNet-49 at the same input size, in one run.

Run by hand: ``python -m bench.mobile`` (from the repository root; ``--size``,
``--batch``, ``--repeats``). Prints, for each backbone, the Keras build time,
parameters, the cost model's multiply-adds and inference images/s (float32,
``training=False`` in a ``tf.function``). Absolute speeds depend on the
machine; compare the two rows of one run.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from bench.decode import timed  # noqa: E402
from spinenet import MOBILE_SCALING_MAP, SCALING_MAP, SPINENET_49, SPINENET_MOBILE_49  # noqa: E402
from spinenet.cost import network_cost  # noqa: E402
from spinenet.decoder import build_spinenet, build_spinenet_mobile  # noqa: E402


def measure(name: str, build, genome, scaling: dict, size: int, batch: int, repeats: int) -> dict:
    """Build time, params, multiply-adds and inference throughput of one backbone."""
    start = time.perf_counter()
    model = build()
    build_seconds = time.perf_counter() - start
    images = tf.random.uniform([batch, size, size, 3])
    infer = tf.function(lambda x: model(x, training=False))
    seconds = timed(lambda: [t.numpy() for t in infer(images).values()], repeats, warmup=2)
    cost = network_cost(genome, size, **scaling)
    return {"name": name, "build_s": build_seconds, "params": model.count_params(),
            "madds": cost.multiply_adds, "images_per_s": batch / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    shape = (args.size, args.size, 3)
    rows = [
        measure("Mobile SpineNet-49", lambda: build_spinenet_mobile("49", input_shape=shape), SPINENET_MOBILE_49,
                MOBILE_SCALING_MAP["49"], args.size, args.batch, args.repeats),
        measure("SpineNet-49", lambda: build_spinenet("49", input_shape=shape), SPINENET_49,
                SCALING_MAP["49"], args.size, args.batch, args.repeats),
    ]
    print(f"{args.size}x{args.size}, batch {args.batch}, float32, {tf.config.threading.get_inter_op_parallelism_threads()} "
          f"inter-op threads (0 = all cores)")
    print(f"  {'backbone':<20} {'build s':>8} {'params':>12} {'multiply-adds':>14} {'images/s':>9}")
    for r in rows:
        print(f"  {r['name']:<20} {r['build_s']:8.2f} {r['params']:12,} {r['madds'] / 1e9:12.2f} G "
              f"{r['images_per_s']:9.1f}")
    mobile, big = rows
    print(f"  Mobile / SpineNet-49: {mobile['madds'] / big['madds']:.3f}x multiply-adds, "
          f"{mobile['images_per_s'] / big['images_per_s']:.2f}x images/s")


if __name__ == "__main__":
    main()
