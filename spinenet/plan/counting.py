"""What planned layers cost: parameters and multiply-adds of a layer, a plan, or one block.

Parameters are Keras ``count_params()``; multiply-adds count convolutions and
squeeze-excitation only, as SpineNet's published figures do.
"""

from __future__ import annotations

from typing import Optional

from search_spaces.block_fns import BN_PARAMS_PER_CHANNEL, get_block_fn
from spinenet.plan.builder import Plan, PlanBuilder, PlanLayer


def _side(size: int, level: Optional[int]) -> int:
    return 1 if level is None else -(-size // 2**level)


def layer_cost(layer: PlanLayer, height: int, width: int) -> tuple[int, int]:
    """(parameters, multiply-adds) of one layer for an input of ``height`` x ``width``.

    Parameters are Keras ``count_params()`` (batch-norm moving statistics
    included). Multiply-adds count convolutions (depthwise included) and
    squeeze-excitation; batch norm, activations, pools and residual adds are
    not counted (SpineNet's published figures count convolutions only).
    """
    h, w = _side(height, layer.level), _side(width, layer.level)
    if layer.kind == "conv":
        weights = layer.kernel * layer.kernel * layer.in_channels * layer.channels
        return weights + (layer.channels if layer.use_bias else 0), h * w * weights
    if layer.kind == "dwconv":
        weights = layer.kernel * layer.kernel * layer.channels
        return weights, h * w * weights
    if layer.kind == "bn":
        return BN_PARAMS_PER_CHANNEL * layer.channels, 0
    if layer.kind == "mul":
        # Squeeze-excitation: the squeeze's sums and the excitation's products are
        # one FLOP per element each, so one multiply-add per element for the pair
        # (FLOPs / 2, as TensorFlow's profiler and the papers count).
        return 0, h * w * layer.channels
    if layer.kind == "custom":
        spec = get_block_fn(layer.block_fn)
        if spec.count_params is None or spec.count_multiply_adds is None:
            raise ValueError(f"block fn {layer.block_fn!r} was registered without count_params/"
                             "count_multiply_adds; the cost model cannot count it")
        return (spec.count_params(layer.in_channels, layer.filters, layer.use_projection),
                spec.count_multiply_adds(layer.in_channels, layer.filters, h, w, layer.use_projection))
    return 0, 0


def plan_cost(plan: Plan, height: int, width: int) -> tuple[int, int]:
    """(parameters, multiply-adds) of a whole plan."""
    params = madds = 0
    for layer in plan.layers:
        p, m = layer_cost(layer, height, width)
        params += p
        madds += m
    return params, madds


def block_cost(block_fn: str, in_channels: int, filters: int, height: int, width: int, use_projection: bool,
               strides: int = 1) -> tuple[int, int]:
    """(parameters, multiply-adds) of one plan-backed block whose output is ``height`` x ``width``."""
    p = PlanBuilder(in_channels, 0, "x")
    spec = get_block_fn(block_fn)
    plan = spec.resolve_plan()
    if plan is None:
        raise ValueError(f"block fn {block_fn!r} has no plan; its registered count_params/count_multiply_adds "
                         "count it")
    extra = {"strides": strides} if strides != 1 else {}
    plan("x", filters, use_projection=use_projection, drop_rate=0.0, layers=p, name="b",
                        **dict(spec.options), **extra)
    level_shift = strides.bit_length() - 1
    return plan_cost(Plan(tuple(p.layers), {}), height << level_shift, width << level_shift)
