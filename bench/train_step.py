"""Where the proxy's train step spends its time: each part timed alone, as a share of the matmul rate.

Run from the repository root: ``python bench/train_step.py [--precision auto|float32|...] [--json FILE]``.

Issue 12 asks for training at 0.8 of the machine's 2048x2048 float32 matmul
rate. This splits the default proxy's train step (SpineNet-49 x0.25 with its
RetinaNet head, ``experiments/proxy_shapes.yaml``, one batch of the generated
shapes) into the parts it is made of, each compiled as its own
``tf.function`` and timed over the same batch in the same process:

- the whole train step, as training runs it;
- labelling the anchors (IoU matching of the batch's boxes);
- the backbone forward, and forward with backward;
- the detector forward, and forward with backward (no update).

The analytic cost (``model_cost``; 2 FLOPs per multiply-add, times 3 for
forward and backward) turns each time into GFLOP/s, so the table says which
part runs far below the matmul rate. The head's figure is the detector's minus
the backbone's. Timings are medians of ``--steps`` calls per part, taken in turn, after two warm-up calls;
the 2048x2048 float32 matmul is one of the parts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from nas.cpu import onednn_settings, use_settings  # noqa: E402  (before TensorFlow loads, as trials do)

use_settings(onednn_settings())

CONFIG = os.path.join(HERE, "experiments", "proxy_shapes.yaml")


def _fetch(fn, args) -> None:
    import tensorflow as tf

    tf.nest.map_structure(lambda t: t.numpy(), fn(*args))


def median_ms(parts: dict, steps: int) -> dict:
    """Median wall time in ms of each ``name: (fn, args)``, results fetched.

    Each is called twice first (tracing, warm-up). The timed calls go round
    the parts in turn, so a change in the machine's speed (another process,
    clock boost) touches every part alike instead of the ones timed last.
    """
    for fn, args in parts.values():
        _fetch(fn, args)
        _fetch(fn, args)
    times = {name: [] for name in parts}
    for _ in range(steps):
        for name, (fn, args) in parts.items():
            start = time.perf_counter()
            _fetch(fn, args)
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def measure(precision: str, steps: int, overrides: list[str]) -> dict:
    """Time each part of the proxy's train step; returns ms per step and GFLOP/s per part."""
    import tensorflow as tf
    import tf_keras

    from nas.experiment import load_train_config
    from nas.tasks import get_task
    from nas.tasks.base import model_cost
    from nas.tasks.detection.anchors import generate_anchors, label_anchors
    from nas.tasks.detection.pipeline import make_dataset
    from nas.tasks.detection.dataset import prepare_data
    from nas.tasks.detection.head import build_detector, detection_losses
    from nas.tasks.detection.train import detection_loss
    from nas.tasks.training import WarmupDecay, make_optimizer, make_train_step, precision_policy, resolve_precision
    from spinenet import SPINENET_49
    from spinenet.decoder import decode

    config = load_train_config(CONFIG, overrides)
    task, training = config.task, config.task.training
    size, batch = task.data.image_size, training.batch_size
    train_split, _ = prepare_data(task.data)
    total, backbone_cost = model_cost(get_task("detection"), SPINENET_49, config, train_split.num_classes)
    flop = {"backbone": backbone_cost.multiply_adds * 2 * batch / 1e9,
            "detector": total.multiply_adds * 2 * batch / 1e9}  # forward GFLOP per step
    precision = resolve_precision(precision)
    with precision_policy(precision):
        tf_keras.utils.set_random_seed(training.seed)
        images, target = next(iter(make_dataset(train_split, image_size=size, batch_size=batch, training=True,
                                                max_instances=task.data.max_instances, disk_cache=task.data.cache)))
        boxes, classes = target["boxes"], target["classes"]
        backbone = decode(SPINENET_49, input_shape=(size, size, 3), **config.model.decode_kwargs())
        model = build_detector(backbone, train_split.num_classes, task.head)
        anchors = tf.constant(generate_anchors(size, SPINENET_49.min_level, SPINENET_49.max_level,
                                               task.head.num_scales, task.head.aspect_ratios, task.head.anchor_size))
        schedule = WarmupDecay(training.learning_rate, 1000, training.warmup_steps)
        optimizer = make_optimizer(schedule, training.momentum, model.trainable_variables)
        step = make_train_step(model, optimizer, detection_loss(anchors, task), training)

        label = tf.function(lambda b, c: label_anchors(anchors, b, c, task.loss.positive_iou, task.loss.negative_iou))
        labels, box_targets = label(boxes, classes)

        def backward(network, loss_of):
            @tf.function
            def run(x):
                with tf.GradientTape() as tape:
                    loss = loss_of(network(x, training=True))
                return tape.gradient(loss, network.trainable_variables)
            return run

        def detector_loss(outputs):
            class_loss, box_loss = detection_losses(outputs, labels, box_targets, task.loss)
            return class_loss + task.loss.box_loss_weight * box_loss

        def backbone_loss(outputs):  # a stand-in loss: the backward pass costs the same whatever it is
            return tf.add_n([tf.reduce_sum(tf.cast(level, tf.float32)) for level in outputs.values()])

        square = tf.random.uniform([2048, 2048])
        ms = median_ms({
            "train step": (step, (images, target)),
            "label anchors": (label, (boxes, classes)),
            "backbone forward": (tf.function(lambda x: backbone(x, training=True)), (images,)),
            "backbone forward+backward": (backward(backbone, backbone_loss), (images,)),
            "detector forward": (tf.function(lambda x: model(x, training=True)), (images,)),
            "detector forward+backward": (backward(model, detector_loss), (images,)),
            "matmul": (tf.function(lambda x: tf.matmul(x, x)), (square,)),
        }, steps)
    rate = 2 * 2048**3 / (ms.pop("matmul") / 1000) / 1e9  # float32: the policy only sets layers' dtypes
    ms["head forward+backward"] = ms["detector forward+backward"] - ms["backbone forward+backward"]
    ms["update and the rest"] = ms["train step"] - ms["detector forward+backward"] - ms["label anchors"]
    gflop = {"train step": 3 * flop["detector"], "backbone forward": flop["backbone"],
             "backbone forward+backward": 3 * flop["backbone"], "detector forward": flop["detector"],
             "detector forward+backward": 3 * flop["detector"],
             "head forward+backward": 3 * (flop["detector"] - flop["backbone"])}
    parts = {name: {"ms": t, **({"gflops": gflop[name] / (t / 1000), "matmul_fraction": gflop[name] / (t / 1000) / rate}
                                if name in gflop and t > 0 else {})} for name, t in ms.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    return {"revision": commit.stdout.strip(), "precision": precision, "batch_size": batch, "image_size": size, "steps": steps,
            "matmul_gflops": rate, "load": os.getloadavg()[0], "parts": parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="auto", help="task.training.precision (default auto)")
    parser.add_argument("--steps", type=int, default=25, help="timed calls per part (default 25)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--json", help="append the result to this JSON file (a list of runs)")
    args = parser.parse_args()
    result = measure(args.precision, args.steps, args.set)
    print(f"proxy train step, {result['precision']}, batch {result['batch_size']} at {result['image_size']}px; "
          f"matmul {result['matmul_gflops']:.0f} GFLOP/s; load {result['load']:.2f}")
    for name, part in result["parts"].items():
        share = f"{part['gflops']:6.1f} GFLOP/s  {part['matmul_fraction']:.2f} of matmul" if "gflops" in part else ""
        print(f"  {name:28s} {part['ms']:7.1f} ms  {share}")
    if args.json:
        runs = json.load(open(args.json)) if os.path.exists(args.json) else []
        runs.append(result)
        with open(args.json, "w") as handle:
            json.dump(runs, handle, indent=1)


if __name__ == "__main__":
    main()
