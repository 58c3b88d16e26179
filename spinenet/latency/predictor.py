"""Predict a model's LiteRT latency from its kernels and this machine's calibration table.

A kernel the table holds costs its measured time; one it lacks costs what a
fit over the table's kernels of the same op predicts from its multiply-adds
and the elements it reads and writes (non-negative least squares). The sum
over a model's kernels is then mapped to whole-model times: the table's
calibration models fix a scale, a cost per kernel and an offset, fitted for
relative error.

Examples:
    >>> from spinenet.latency.calibration import CalibrationTable
    >>> from spinenet.latency.kernels import Kernel
    >>> table = CalibrationTable({}, kernels={"add k1 s1 8>8 4x4 +none n2": {"ms": 0.5, "op": "add",
    ...                                       "multiply_adds": 128, "elements": 384}})
    >>> LatencyPredictor(table).predict([Kernel("add", 4, 4, 8, 8, inputs=2)] * 3).ms
    1.5
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np

from spinenet.latency.calibration import CalibrationTable
from spinenet.latency.kernels import Kernel


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A predicted latency: ``ms`` (scaled), the kernels' plain sum, and how many kernels the table lacked."""

    ms: float
    kernel_sum_ms: float
    kernels: int
    estimated: int


class LatencyPredictor:
    """Predicts LiteRT latency (ms) of a list of kernels from a :class:`CalibrationTable`."""

    def __init__(self, table: CalibrationTable):
        self.table = table
        entries = list(table.kernels.values())
        self._fits = {op: _fit([e for e in entries if e["op"] == op]) for op in {e["op"] for e in entries}}
        self._overall = _fit(entries)
        self.scale, self.per_kernel_ms, self.offset_ms = _correction(table.models)

    def kernel_ms(self, kernel: Kernel) -> tuple[float, bool]:
        """The kernel's time and whether it was measured (False: estimated by its op's fit)."""
        entry = self.table.kernels.get(kernel.key)
        if entry is not None:
            return float(entry["ms"]), True
        coefficients = self._fits.get(kernel.op)
        if coefficients is None:
            coefficients = self._overall
        if coefficients is None:
            raise ValueError("the latency calibration table holds no kernels; run spinenas latency --calibrate")
        return float(coefficients @ _features(kernel.multiply_adds, kernel.elements)), False

    def kernel_sum(self, kernels: Iterable[Kernel]) -> tuple[float, int, int]:
        """Plain sum of the kernels' times, their count and how many were estimated."""
        total, count, estimated = 0.0, 0, 0
        for kernel in kernels:
            ms, measured = self.kernel_ms(kernel)
            total += ms
            count += 1
            estimated += not measured
        return total, count, estimated

    def predict(self, kernels: Iterable[Kernel]) -> Prediction:
        """The whole model's predicted latency."""
        total, count, estimated = self.kernel_sum(kernels)
        return Prediction(self.scale * total + self.per_kernel_ms * count + self.offset_ms, total, count, estimated)


def _features(multiply_adds: float, elements: float) -> np.ndarray:
    return np.array([1.0, multiply_adds / 1e6, elements / 1e6])


def _fit(entries: list):
    """Non-negative coefficients of ms ~ 1, mega multiply-adds, mega elements (None with under 3 entries)."""
    if len(entries) < 3:
        return None
    from scipy.optimize import nnls

    x = np.array([_features(e["multiply_adds"], e["elements"]) for e in entries])
    y = np.array([e["ms"] for e in entries])
    # Relative error matters (a 0.01 ms kernel 0.01 ms off is 100% off): weight rows by 1/time.
    weights = 1.0 / np.maximum(y, 1e-3)
    coefficients, _ = nnls(x * weights[:, None], y * weights)
    return coefficients


def _correction(models: list) -> tuple:
    """Coefficients taking a model's kernel sum (and kernel count) to its measured time, fitted for relative error.

    Kernels timed alone cost more than inside a model, where their inputs are
    still in cache and no call separates them; how much more grows with the
    number of kernels. With four or more calibration models the fit is
    ``a * sum + b * kernels + c``; with two or three ``a * sum + c``; with one,
    the ratio.
    """
    rows = [(m["kernel_ms"], m.get("kernels", 0), m["measured_ms"]) for m in models
            if m.get("kernel_ms") and m.get("measured_ms")]
    if not rows:
        return (1.0, 0.0, 0.0)
    sums, counts, measured = (np.array(column, float) for column in zip(*rows))
    if len(rows) == 1 or np.ptp(sums) == 0:
        return (float(np.mean(measured / sums)), 0.0, 0.0)
    columns = [sums / measured, 1.0 / measured]
    if len(rows) >= 4 and np.all(counts > 0) and np.ptp(counts) > 0:
        columns.insert(1, counts / measured)
    coefficients, *_ = np.linalg.lstsq(np.stack(columns, axis=1), np.ones(len(rows)), rcond=None)
    if len(columns) == 2:
        return (float(coefficients[0]), 0.0, float(coefficients[1]))
    return tuple(float(c) for c in coefficients)


__all__ = ["LatencyPredictor", "Prediction"]
