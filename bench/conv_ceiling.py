"""The fastest the proxy's convolutions can train on this machine: each one timed alone, against the matmul.

Run from the repository root: ``python bench/conv_ceiling.py [--steps N] [--threads N] [--json FILE]``.

Issue 12 asks the proxy to train at 0.8 of the machine's 2048x2048 float32
matmul rate. Almost all of the proxy's counted work is convolutions. This
finds every convolution the default proxy's detector runs
(``experiments/proxy_shapes.yaml``: SpineNet-49 x0.25 with its RetinaNet head,
batch 16 at 128x128; each shared head convolution once per level) and times
what its training costs by itself: the forward convolution, the filter
gradient, and the input gradient (the stem has no input gradient, as in
training). Nothing else runs: no batch norm, activation, resampling, loss or
update, and no dispatch between layers. The inputs are fixed random tensors.

The sum of their multiply-adds over the sum of their times is therefore an
upper bound on the share of the matmul rate the whole train step can reach
with these kernels on this machine. Each timed call also pays for running a
``tf.function``, which a train step pays once; a call that does nothing is
timed too, and the bound is also given without it. The table groups the convolutions by
kind and width so it shows where the rate is lost. Each time is the fastest
of ``--steps`` calls per convolution, taken in turn with the matmul, after
two warm-up calls. The convolutions run with the kernels the commands
choose (``TF_ENABLE_ONEDNN_OPTS``, see ``nas/cpu.py``); the 2048x2048 matmul
is timed in turn with them, and once more in a subprocess with the other
kernels, and the faster of the two is the reference, as in ``bench/proxy.py``.
``--threads 1`` times both on one core, as each of a search's workers trains.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from nas.cpu import onednn_setting, onednn_settings, use_settings  # noqa: E402  (before TensorFlow loads)

use_settings(onednn_settings())

CONFIG = os.path.join(HERE, "experiments", "proxy_shapes.yaml")


def conv_sites(model) -> list[dict]:
    """Every convolution call in ``model`` (nested models walked): name, input shape, filters, kernel, stride."""
    import tf_keras

    sites = []
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model):
            sites.extend(conv_sites(layer))
            continue
        if type(layer) is not tf_keras.layers.Conv2D:
            if isinstance(layer, tf_keras.layers.Conv2D):  # depthwise/separable: not in the default proxy
                raise ValueError(f"{layer.name}: {type(layer).__name__} is not timed by this benchmark")
            continue
        for node in range(len(layer.inbound_nodes)):
            shape = layer.get_input_shape_at(node)
            sites.append({"name": layer.name, "input": list(shape[1:]), "filters": layer.filters,
                          "kernel": list(layer.kernel_size), "strides": list(layer.strides),
                          "padding": layer.padding, "bias": layer.use_bias})
    return sites


def multiply_adds(site: dict, batch: int) -> int:
    """Forward multiply-adds of one convolution call over a batch."""
    *sides, channels = site["input"]
    same = site["padding"] == "same"
    out = [-(-side // stride) if same else (side - k) // stride + 1  # "same" pads to ceil(side / stride)
           for side, k, stride in zip(sides, site["kernel"], site["strides"])]
    return batch * out[0] * out[1] * site["kernel"][0] * site["kernel"][1] * channels * site["filters"]


def kind(site: dict) -> str:
    """A row label: kernel size, stride and the wider of the two channel counts, in bands."""
    widest = max(site["input"][2], site["filters"])
    band = next(f"<= {b}" for b in (16, 32, 64, 128, 256, 1 << 30) if widest <= b)
    band = "> 256" if band == f"<= {1 << 30}" else band
    k = "x".join(map(str, site["kernel"]))
    return f"{k} stride {site['strides'][0]}, widest {band}"


def training_call(site: dict, batch: int, input_gradient: bool):
    """A compiled forward + filter gradient (+ input gradient) of one convolution, and its arguments."""
    import tensorflow as tf

    height, width, channels = site["input"]
    x = tf.random.normal([batch, height, width, channels])
    kernel = tf.Variable(tf.random.normal([*site["kernel"], channels, site["filters"]], stddev=0.05))
    strides = [1, *site["strides"], 1]
    padding = site["padding"].upper()

    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            if input_gradient:
                tape.watch(x)
            y = tf.nn.conv2d(x, kernel, strides, padding)
            # The sum's gradient is a tensor of ones shaped like y: the kernels see a real upstream gradient.
            loss = tf.reduce_sum(y)
        sources = [kernel, x] if input_gradient else [kernel]
        # The loss is fetched too: otherwise the forward convolution is dead code and never runs.
        return [loss, *tape.gradient(loss, sources)]

    return run, (x,)


_OTHER_MATMUL = """
import sys, time
import tensorflow as tf
threads = int(sys.argv[1])
if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
x = tf.random.uniform([2048, 2048])
f = tf.function(lambda x: tf.matmul(x, x))
f(x).numpy(); f(x).numpy()
times = []
for _ in range(7):
    start = time.perf_counter(); f(x).numpy(); times.append(time.perf_counter() - start)
print(2 * 2048**3 / min(times) / 1e9)
"""


def other_kernels_matmul(threads: int) -> float:
    """The 2048x2048 float32 matmul rate, in GFLOP/s, with the kernels this process does not use."""
    other = "0" if onednn_setting() else "1"
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=other)
    out = subprocess.run([sys.executable, "-c", _OTHER_MATMUL, str(threads)], capture_output=True, text=True,
                         check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def measure(steps: int, overrides: list[str], threads: int = 0) -> dict:
    """Time every convolution of the proxy's detector alone; return per-site times and the grouped table."""
    import tensorflow as tf

    from nas.experiment import load_train_config
    from nas.tasks import get_task
    from nas.tasks.base import model_cost
    from nas.tasks.detection.dataset import prepare_data
    from nas.tasks.detection.head import build_detector
    from spinenet import SPINENET_49
    from spinenet.decoder import decode

    config = load_train_config(CONFIG, overrides)
    task, training = config.task, config.task.training
    size, batch = task.data.image_size, training.batch_size
    train_split, _ = prepare_data(task.data)
    total, _ = model_cost(get_task("detection"), SPINENET_49, config, train_split.num_classes)
    backbone = decode(SPINENET_49, input_shape=(size, size, 3), **config.model.decode_kwargs())
    model = build_detector(backbone, train_split.num_classes, task.head)
    sites = conv_sites(model)
    stem = sites[0]["input"][2] == 3
    calls = [training_call(site, batch, input_gradient=not (stem and i == 0)) for i, site in enumerate(sites)]
    square = tf.random.uniform([2048, 2048])
    matmul = tf.function(lambda x: tf.matmul(x, x))

    def fetch(fn, args):
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))

    # A call that does next to nothing: what each timed call pays just to run a tf.function and fetch it.
    nothing = tf.function(lambda x: x + 1.0)
    parts = [*calls, (nothing, (tf.constant(0.0),)), (matmul, (square,))]
    for fn, args in parts:
        fetch(fn, args)
        fetch(fn, args)
    times = [[] for _ in parts]
    for round_ in range(steps):
        for i, (fn, args) in enumerate(parts):
            start = time.perf_counter()
            fetch(fn, args)
            times[i].append(time.perf_counter() - start)
        print(f"\rround {round_ + 1}/{steps}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    seconds = [min(t) for t in times]  # the fastest call: a ceiling should flatter the convolutions
    own = 2 * 2048**3 / min(times[-1]) / 1e9
    seconds.pop()
    call_ms = 1000 * seconds.pop()
    other = other_kernels_matmul(threads)
    rate = max(own, other)
    for i, (site, s) in enumerate(zip(sites, seconds)):
        passes = 2 if stem and i == 0 else 3
        site.update(ms=1000 * s, gflop=passes * 2 * multiply_adds(site, batch) / 1e9)
    conv_madds = sum(multiply_adds(s, batch) for s in sites)
    rows: dict[str, dict] = {}
    for site in sites:
        row = rows.setdefault(kind(site), {"calls": 0, "ms": 0.0, "gflop": 0.0})
        row["calls"] += 1
        row["ms"] += site["ms"]
        row["gflop"] += site["gflop"]
    all_gflop, all_ms = sum(s["gflop"] for s in sites), sum(s["ms"] for s in sites)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    return {"revision": commit.stdout.strip(), "host": platform.node(), "onednn": onednn_setting(),
            "threads": tf.config.threading.get_intra_op_parallelism_threads(), "batch_size": batch,
            "image_size": size, "steps": steps, "matmul_gflops": rate,
            "matmul_gflops_by_kernels": {"own": own, "other": other}, "load": os.getloadavg()[0],
            "model_multiply_adds": total.multiply_adds * batch, "conv_multiply_adds": conv_madds,
            "convolutions_ms": all_ms, "convolutions_gflops": all_gflop / (all_ms / 1000),
            "ceiling": all_gflop / (all_ms / 1000) / rate, "call_ms": call_ms,
            "ceiling_without_calls": all_gflop / ((all_ms - len(sites) * call_ms) / 1000) / rate,
            "rows": rows, "sites": sites}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="timed calls per convolution (default 15)")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads (default 0: TensorFlow's choice; a search worker uses 1)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--json", help="append the result to this JSON file (a list of runs)")
    args = parser.parse_args()
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per convolution: retracing warnings say nothing here
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    result = measure(args.steps, args.set, args.threads)
    rate = result["matmul_gflops"]
    print(f"proxy convolutions, batch {result['batch_size']} at {result['image_size']}px, "
          f"{result['threads'] or 'default'} threads, oneDNN {result['onednn']}; matmul {rate:.0f} GFLOP/s; "
          f"load {result['load']:.2f}")
    print(f"  convolution multiply-adds {result['conv_multiply_adds'] / 1e9:.2f} G of the model's "
          f"{result['model_multiply_adds'] / 1e9:.2f} G per batch")
    print(f"  {'kind':34s} {'calls':>5s} {'ms':>8s} {'share of time':>13s} {'GFLOP/s':>8s} {'of matmul':>9s}")
    for name, row in sorted(result["rows"].items(), key=lambda item: -item[1]["ms"]):
        speed = row["gflop"] / (row["ms"] / 1000)
        print(f"  {name:34s} {row['calls']:5d} {row['ms']:8.1f} {row['ms'] / result['convolutions_ms']:13.2f} "
              f"{speed:8.1f} {speed / rate:9.2f}")
    print(f"  {'all convolutions, each alone':34s} {len(result['sites']):5d} {result['convolutions_ms']:8.1f} "
          f"{1:13.2f} {result['convolutions_gflops']:8.1f} {result['ceiling']:9.2f}")
    print(f"  a call doing nothing takes {result['call_ms']:.3f} ms; without {len(result['sites'])} of them the "
          f"convolutions would reach {result['ceiling_without_calls']:.2f} of the matmul rate")
    if args.json:
        runs = json.load(open(args.json)) if os.path.exists(args.json) else []
        runs.append(result)
        with open(args.json, "w") as handle:
            json.dump(runs, handle, indent=1)


if __name__ == "__main__":
    main()
