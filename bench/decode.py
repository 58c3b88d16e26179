"""Benchmark the decoder: build time, cost-model speed, and throughput against a matmul baseline.

Run by hand (``make bench`` or ``python bench/decode.py``). Absolute numbers
depend on the machine, so throughput is also printed as a fraction of the
float32 rate of a 2048x2048 matmul measured in the same run; SPINENET.md gives
the reference implementation's fractions on the developers' 2-core machine
(about 0.93 for inference and 0.81 for a training step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from spinenet import SPINENET_49, build_spinenet  # noqa: E402
from spinenet.cost import count_multiply_adds, network_cost  # noqa: E402
from spinenet.specs import SCALING_MAP  # noqa: E402


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    step = tf.function(lambda: tf.matmul(a, b))
    seconds = timed(lambda: step().numpy(), repeats, warmup=2)
    return 2 * size**3 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jit", action="store_true", help="also time XLA-compiled steps")
    args = parser.parse_args()

    print("== build at 640x640 (seconds)")
    for model_id in ("49", "96", "143", "190"):
        start = time.perf_counter()
        model = build_spinenet(model_id)
        print(f"  SpineNet-{model_id:<4} {time.perf_counter() - start:6.2f} s   {model.count_params():,} params")
        del model
        tf_keras_clear()

    start = time.perf_counter()
    n = 2000
    for _ in range(n):
        SPINENET_49.__dict__.pop("fingerprint", None)
        network_cost(SPINENET_49, 640, **SCALING_MAP["96"])
        _ = SPINENET_49.fingerprint
    print(f"== cost model + fingerprint: {(time.perf_counter() - start) / n * 1e3:.3f} ms per genome")

    baseline = matmul_gflops()
    print(f"== 2048x2048 float32 matmul: {baseline:.1f} GFLOP/s")

    size, batch = args.size, args.batch
    flops_per_image = 2 * count_multiply_adds(SPINENET_49, size)
    model = build_spinenet("49", input_shape=(size, size, 3))
    images = tf.random.uniform([batch, size, size, 3])
    import tf_keras  # noqa: PLC0415

    optimizer = tf_keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)

    def make_steps(jit: bool):
        @tf.function(jit_compile=jit)
        def infer(x):
            return model(x, training=False)

        @tf.function(jit_compile=jit)
        def train(x):
            with tf.GradientTape() as tape:
                features = model(x, training=True)
                loss = tf.add_n([tf.reduce_mean(tf.square(f)) for f in features.values()])
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return infer, train

    modes = [False, True] if args.jit else [False]
    print(f"== SpineNet-49 at {size}x{size}, batch {batch}, float32 "
          f"({flops_per_image / 2e9:.2f} G multiply-adds per image)")
    for jit in modes:
        infer, train = make_steps(jit)
        t_infer = timed(lambda: tf.nest.map_structure(lambda t: t.numpy(), infer(images)), args.repeats, warmup=2)
        t_train = timed(lambda: train(images).numpy(), args.repeats, warmup=2)
        label = "xla " if jit else "eager-graph"
        infer_rate = batch / t_infer
        train_rate = batch / t_train
        infer_frac = infer_rate * flops_per_image / 1e9 / baseline
        # A training step costs about three forward passes (forward, input and weight gradients).
        train_frac = train_rate * 3 * flops_per_image / 1e9 / baseline
        print(f"  [{label}] inference {infer_rate:6.1f} images/s = {infer_frac:.2f} of matmul rate")
        print(f"  [{label}] training  {train_rate:6.1f} images/s = {train_frac:.2f} of matmul rate")


def tf_keras_clear() -> None:
    import tf_keras  # noqa: PLC0415

    tf_keras.backend.clear_session()


if __name__ == "__main__":
    main()
