"""Latency: run a model under LiteRT or TensorFlow, time it, and predict it from the layer plan.

:mod:`~spinenet.latency.runtime` converts a model to LiteRT and times both
runtimes; :mod:`~spinenet.latency.kernels` turns a layer plan into the kernels
LiteRT runs (batch norm folded, ReLU fused, as its converter does);
:mod:`~spinenet.latency.calibration` times each kernel kind on this machine
once and keeps the table; :mod:`~spinenet.latency.predictor` sums a genome's
kernels from that table. Only the runtime and calibration need TensorFlow.
"""
