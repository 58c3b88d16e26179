"""Calibration: time every kernel kind on this machine once, and keep the times as a table.

Each distinct :class:`~spinenet.latency.kernels.Kernel` (op, shapes and
settings) is built alone as a one-layer Keras model, converted to LiteRT and
timed at batch 1; the time of an empty model is taken off, so a kernel's
entry is its own cost. A few whole models are timed too: the predictor
scales the sum of a model's kernels to them (what running kernels back to
back costs beyond running them alone). The table records the machine, the
thread count and the converter and runtime versions it was measured with,
and :func:`load_table` refuses it anywhere else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Iterable, Optional

import numpy as np

from spinenet.latency.kernels import Kernel
from spinenet.latency.runtime import machine_identity

FORMAT = 1
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "spinenas", "latency")

# A builder returns (concrete function, example inputs, the trackable holding its variables) of a one-kernel model.
Builder = Callable[[Kernel], tuple]


class CalibrationMismatch(ValueError):
    """A calibration table measured on another machine, thread count or runtime version."""


def default_table_path(threads: int) -> str:
    """Where this machine's table for ``threads`` LiteRT threads lives by default."""
    return os.path.join(DEFAULT_DIR, f"litert_{threads}thread{'s' if threads != 1 else ''}.json")


@dataclasses.dataclass
class CalibrationTable:
    """Measured kernel times (ms) on one machine, and whole-model times to scale their sums to.

    ``kernels`` maps :attr:`Kernel.key` to ``{"ms", "spread_ms", "op",
    "multiply_adds", "elements"}``; ``models`` lists ``{"name", "kernel_ms",
    "measured_ms"}`` of whole models timed at calibration.
    """

    identity: dict
    baseline_ms: float = 0.0
    kernels: dict = dataclasses.field(default_factory=dict)
    models: list = dataclasses.field(default_factory=list)

    def missing(self, kernels: Iterable[Kernel]) -> list[Kernel]:
        """The distinct ``kernels`` the table has no time for, in first-seen order."""
        out = {}
        for kernel in kernels:
            if kernel.key not in self.kernels and kernel.key not in out:
                out[kernel.key] = kernel
        return list(out.values())

    def save(self, path: str) -> None:
        """Write the table as JSON (atomically: a killed calibration leaves the previous table)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        data = {"format": FORMAT, "identity": self.identity, "baseline_ms": self.baseline_ms,
                "kernels": self.kernels, "models": self.models}
        partial = f"{path}.partial"
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(partial, path)


def new_table(threads: int) -> CalibrationTable:
    """An empty table for this machine at ``threads`` threads."""
    return CalibrationTable(identity=machine_identity(threads))


def load_table(path: str, threads: int, *, missing_ok: bool = False) -> Optional[CalibrationTable]:
    """The table at ``path``, checked against this machine at ``threads`` threads.

    Raises :class:`CalibrationMismatch` naming every field that differs (a
    table from another machine or version is never used), ``ValueError`` for
    a file that is not a table, and ``FileNotFoundError`` when there is none
    (``missing_ok``: None).
    """
    if not os.path.exists(path):
        if missing_ok:
            return None
        raise FileNotFoundError(f"{path}: no latency calibration table; measure one with spinenas latency "
                                "--calibrate --experiment FILE")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        table = CalibrationTable(dict(data["identity"]), float(data["baseline_ms"]), dict(data["kernels"]),
                                 list(data["models"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a spinenas latency calibration table ({err})") from None
    here = machine_identity(threads)
    differs = [f"{key} {table.identity.get(key)!r} there, {value!r} here" for key, value in here.items()
               if table.identity.get(key) != value]
    if differs:
        raise CalibrationMismatch(f"{path} was measured elsewhere ({'; '.join(differs)}); re-measure it with "
                                  "spinenas latency --calibrate, which sets it aside (or name another table)")
    return table


def measure_kernels(table: CalibrationTable, kernels: list[Kernel], *, builders: Optional[dict] = None,
                    repeats: int = 20, min_seconds: float = 0.1, progress: Optional[Callable[[int, int], None]] = None,
                    save: Optional[Callable[[], None]] = None, save_every: int = 20) -> None:
    """Time each of ``kernels`` alone under LiteRT and enter it in ``table`` (the baseline first, if unmeasured).

    ``builders`` adds ops of a task's own (``{op: Builder}``) to the standard
    ones. ``save()`` is called every ``save_every`` kernels, so a killed
    calibration keeps what it measured.
    """
    from spinenet.latency.runtime import LiteRTModel, convert_to_litert

    threads = table.identity["threads"]
    known = {**STANDARD_BUILDERS, **(builders or {})}
    if not table.baseline_ms:
        function, inputs, holder = _empty_model()
        model = LiteRTModel(convert_to_litert(function, trackable=holder), threads)
        table.baseline_ms = model.time(*inputs, repeats=repeats, min_seconds=min_seconds).median_ms
    for done, kernel in enumerate(kernels, 1):
        if kernel.op not in known:
            raise ValueError(f"kernel {kernel.key}: no builder for op {kernel.op!r} (known: {', '.join(sorted(known))})")
        function, inputs, holder = known[kernel.op](kernel)
        model = LiteRTModel(convert_to_litert(function, trackable=holder), threads)
        timing = model.time(*inputs, repeats=repeats, min_seconds=min_seconds)
        table.kernels[kernel.key] = {"ms": max(timing.median_ms - table.baseline_ms, 0.0),
                                     "spread_ms": timing.spread_ms, "op": kernel.op,
                                     "multiply_adds": kernel.multiply_adds, "elements": kernel.elements}
        if progress is not None:
            progress(done, len(kernels))
        if save is not None and done % save_every == 0:
            save()
    if save is not None:
        save()


def _function(layer_fn, *shapes, keep=()):
    """A traced batch-1 function of ``layer_fn`` over inputs of ``shapes``, inputs for it, and what holds ``keep``.

    ``keep`` are the Keras layers the function calls: the converter reads their
    variables through the holder (a traced function keeps no reference of its own).
    """
    import tensorflow as tf

    specs = [tf.TensorSpec([1, *shape], tf.float32) for shape in shapes]
    function = tf.function(layer_fn, input_signature=specs).get_concrete_function()
    holder = tf.Module()
    holder.layers = list(keep)
    rng = np.random.default_rng(0)
    return function, [rng.standard_normal([1, *shape]).astype(np.float32) for shape in shapes], holder


def _empty_model():
    import tensorflow as tf

    return _function(lambda x: tf.identity(x + 1.0), (1, 1, 1))


def _activation(name: str):
    import tf_keras

    from spinenet.blocks import hard_sigmoid

    return tf_keras.layers.Activation(hard_sigmoid if name == "hard_sigmoid" else name)


def _conv(kernel: Kernel):
    import tf_keras

    if kernel.op == "conv":
        conv = tf_keras.layers.Conv2D(kernel.channels, kernel.kernel, strides=kernel.strides, padding="same",
                                      use_bias=False)
    else:
        conv = tf_keras.layers.DepthwiseConv2D(kernel.kernel, strides=kernel.strides, padding="same",
                                               use_bias=False)
    # Random statistics, so the converter folds a real batch norm into the weights.
    norm = tf_keras.layers.BatchNormalization(moving_mean_initializer="random_normal",
                                              moving_variance_initializer="ones")
    act = _activation(kernel.act) if kernel.act != "none" else None

    def layer(x):
        y = norm(conv(x), training=False)
        return act(y) if act is not None else y

    return _function(layer, (kernel.height, kernel.width, kernel.in_channels), keep=[conv, norm])


def _add(kernel: Kernel):
    import tf_keras

    act = _activation(kernel.act) if kernel.act != "none" else None
    add = tf_keras.layers.Add()
    shape = (kernel.height, kernel.width, kernel.channels)

    def layer(*xs):
        y = add(list(xs))
        return act(y) if act is not None else y

    return _function(layer, *([shape] * kernel.inputs))


def _single(make):
    def build(kernel: Kernel):
        layer = make(kernel)
        return _function(lambda x: layer(x), (kernel.height, kernel.width, kernel.in_channels), keep=[layer])
    return build


def _mul(kernel: Kernel):
    return _function(lambda x, gate: x * gate, (kernel.height, kernel.width, kernel.channels),
                     (1, 1, kernel.channels))


def _dense(kernel: Kernel):
    import tf_keras

    dense = tf_keras.layers.Dense(kernel.channels)
    return _function(lambda x: dense(x[:, 0, 0, :]), (1, 1, kernel.in_channels), keep=[dense])


def _standard_builders() -> dict:
    def maxpool(k):
        import tf_keras
        return tf_keras.layers.MaxPool2D(k.kernel, strides=k.strides, padding="same")

    def upsample(k):
        from spinenet.blocks import NearestUpsampling
        return NearestUpsampling(k.scale)

    def mean(k):
        import tf_keras
        return tf_keras.layers.GlobalAveragePooling2D(keepdims=True)

    def norm(k):
        import tf_keras
        return tf_keras.layers.BatchNormalization(moving_mean_initializer="random_normal")

    return {"conv": _conv, "dwconv": _conv, "add": _add, "mul": _mul, "dense": _dense,
            "maxpool": _single(maxpool), "upsample": _single(upsample), "mean": _single(mean),
            "bn": _single(norm), "act": _single(lambda k: _activation(k.act))}


STANDARD_BUILDERS = _standard_builders()

__all__ = ["Builder", "CalibrationMismatch", "CalibrationTable", "DEFAULT_DIR", "STANDARD_BUILDERS",
           "default_table_path", "load_table", "measure_kernels", "new_table"]
