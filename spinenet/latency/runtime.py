"""Convert a model to LiteRT, run it, and time it under LiteRT or TensorFlow.

LiteRT files are written by TensorFlow's converter and run by the
``ai-edge-litert`` interpreter, the runtime a device uses. Times are wall
clock per call at a fixed batch, after warm-up: the median and the spread
(the interquartile range) of repeated calls.

Examples:
    >>> import numpy as np, tensorflow as tf
    >>> fn = tf.function(lambda x: {"y": x * 2.0}, input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    >>> model = LiteRTModel(convert_to_litert(fn.get_concrete_function()))
    >>> model.run(np.ones([1, 4], np.float32))["y"].tolist()
    [[2.0, 2.0, 2.0, 2.0]]
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
import platform
import re
import statistics
import time
import warnings
from typing import Callable, Optional, Sequence

import numpy as np

# Weight formats a LiteRT file may hold: float32 as trained, float16 weights, or int8 weights with
# float activations (dynamic-range quantisation, which needs no calibration data).
QUANTIZATIONS = ("float32", "float16", "int8")


class ConversionError(ValueError):
    """A model LiteRT cannot convert; the message names the layer (when the converter says) and the op."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """Repeated wall-clock times of one call, in milliseconds."""

    median_ms: float
    q25_ms: float
    q75_ms: float
    min_ms: float
    runs: int

    @property
    def spread_ms(self) -> float:
        """Interquartile range."""
        return self.q75_ms - self.q25_ms

    def to_dict(self) -> dict:
        """Plain data, with the spread."""
        return {**dataclasses.asdict(self), "spread_ms": self.spread_ms}


def summarise(seconds: Sequence[float]) -> Timing:
    """A :class:`Timing` of call durations in seconds."""
    ms = sorted(s * 1e3 for s in seconds)
    if len(ms) == 1:
        return Timing(ms[0], ms[0], ms[0], ms[0], 1)
    q = statistics.quantiles(ms, n=4, method="inclusive")
    return Timing(statistics.median(ms), q[0], q[2], ms[0], len(ms))


def time_calls(call: Callable[[], object], *, warmup: int = 3, repeats: int = 20,
               min_seconds: float = 0.0) -> Timing:
    """Time ``call()``: ``warmup`` untimed calls, then ``repeats`` timed ones (more until ``min_seconds`` pass)."""
    for _ in range(warmup):
        call()
    seconds = []
    started = time.perf_counter()
    while len(seconds) < repeats or time.perf_counter() - started < min_seconds:
        mark = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - mark)
    return summarise(seconds)


def convert_to_litert(concrete_function, quantization: str = "float32", *, layer_names: Sequence[str] = (),
                      trackable=None) -> bytes:
    """The LiteRT flatbuffer of a TensorFlow ``concrete_function``, built-in ops only.

    ``quantization`` is one of :data:`QUANTIZATIONS`. A graph with an op LiteRT
    has no kernel for raises :class:`ConversionError` naming the first of
    ``layer_names`` (the model's Keras layers) the converter's message mentions.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
    # A trackable keeps the function's signature (its output names) in the file.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function], trackable or tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as err:  # the converter raises several types, all with the MLIR diagnostics as text
        raise ConversionError(_conversion_message(str(err), layer_names)) from None


def _conversion_message(text: str, layer_names: Sequence[str]) -> str:
    ops = re.findall(r"'(tf\.\w+)' op", text)
    # A layer is named only where the error's own location names it: the rest of the text dumps the
    # whole module, whose signature names outputs such as "classes" that are layer names too.
    located = "\n".join(line for line in text.splitlines() if "error:" in line)
    # Longest names first, so block7_merge_act is not reported as block7_merge.
    layer = next((name for name in sorted(layer_names, key=len, reverse=True)
                  if re.search(rf"\b{re.escape(name)}\b", located)), None)
    where = f"layer {layer}" if layer else "the model"
    what = f"op {ops[0]} has no LiteRT built-in kernel" if ops else text.strip().splitlines()[0][:300]
    return f"LiteRT cannot convert {where}: {what}"


def litert_version() -> Optional[str]:
    """The installed ``ai-edge-litert`` runtime's version."""
    try:
        return importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        return None


class LiteRTModel:
    """A LiteRT model loaded into the ``ai-edge-litert`` interpreter with ``threads`` CPU threads."""

    def __init__(self, model: bytes | str, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        content = model
        if isinstance(model, str):
            with open(model, "rb") as handle:
                content = handle.read()
        self.threads = threads
        with warnings.catch_warnings(), _quiet_stderr():
            warnings.simplefilter("ignore")
            self.interpreter = Interpreter(model_content=content, num_threads=threads)
            self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        # Output names as the model's signature gives them (a dict output keeps its keys).
        signatures = self.interpreter.get_signature_list()
        self._names = {}
        if signatures:
            runner_outputs = next(iter(signatures.values()))["outputs"]
            runner = self.interpreter.get_signature_runner(next(iter(signatures)))
            details = runner.get_output_details()
            self._names = {details[name]["index"]: name for name in runner_outputs}
        self.outputs = self.interpreter.get_output_details()

    def run(self, *arrays: np.ndarray) -> dict:
        """Outputs (name -> array) for ``arrays`` (one per model input, in order)."""
        self._set(arrays)
        self.interpreter.invoke()
        return {self._names.get(o["index"], o["name"]): self.interpreter.get_tensor(o["index"]) for o in self.outputs}

    def time(self, *arrays: np.ndarray, warmup: int = 3, repeats: int = 20, min_seconds: float = 0.0) -> Timing:
        """Time :meth:`run`'s invoke (inputs set once, outputs not copied)."""
        self._set(arrays)
        return time_calls(self.interpreter.invoke, warmup=warmup, repeats=repeats, min_seconds=min_seconds)

    def _set(self, arrays) -> None:
        if len(arrays) != len(self.inputs):
            raise ValueError(f"the model takes {len(self.inputs)} input(s), got {len(arrays)}")
        # The interpreter lists inputs in its own order: each array goes to the first free input of its shape.
        free = list(self.inputs)
        for array in arrays:
            array = np.asarray(array)
            detail = next((d for d in free if tuple(d["shape"]) == array.shape), None)
            if detail is None:
                raise ValueError(f"no input of the model has shape {array.shape} "
                                 f"(inputs: {', '.join(str(tuple(d['shape'])) for d in self.inputs)})")
            free.remove(detail)
            self.interpreter.set_tensor(detail["index"], array.astype(detail["dtype"], copy=False))


@contextlib.contextmanager
def _quiet_stderr():
    """Hide what the runtime's C++ writes to standard error (its "Created XNNPACK delegate" line) meanwhile."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 to redirect
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def time_tensorflow(function, *arrays: np.ndarray, warmup: int = 3, repeats: int = 20,
                    min_seconds: float = 0.0) -> Timing:
    """Time a (traced) TensorFlow ``function`` on ``arrays`` in this process's TensorFlow runtime."""
    import tensorflow as tf

    tensors = [tf.constant(a) for a in arrays]

    def call():
        outputs = function(*tensors)
        # Wait for the result: TensorFlow may return before the kernels finish.
        for value in tf.nest.flatten(outputs):
            value.numpy()

    return time_calls(call, warmup=warmup, repeats=repeats, min_seconds=min_seconds)


def machine_identity(threads: int) -> dict:
    """What a latency is a property of: processor, core count, threads, and the converter and runtime versions."""
    return {"processor": _processor_name(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "threads": threads, "litert": litert_version(), "tensorflow": _version("tensorflow")}


def _processor_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> Optional[str]:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


__all__ = ["ConversionError", "LiteRTModel", "QUANTIZATIONS", "Timing", "convert_to_litert", "litert_version",
           "machine_identity", "summarise", "time_calls", "time_tensorflow"]
