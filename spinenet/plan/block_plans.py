"""The built-in blocks' plans (``bottleneck``, ``residual``, ``mbconv``), attached to their names where defined.

Each is written once against :class:`~spinenet.plan.builder.PlanBuilder`, so
the decoder builds and the cost model counts the same layers. Importing this
module registers them (:func:`~search_spaces.block_fns.implement_block_fn`).
"""

from __future__ import annotations

from search_spaces.block_fns import implement_block_fn
from spinenet.plan.builder import PlanBuilder


def _finish(p: PlanBuilder, x, shortcut, drop_rate: float, name: str):
    if drop_rate > 0:
        x = p.drop(x, drop_rate, name=f"{name}_drop")
    x = p.add([shortcut, x], name=f"{name}_add")
    return p.act(x, name=f"{name}_out")


def bottleneck(x, filters: int, *, use_projection: bool, drop_rate: float, layers: PlanBuilder, name: str):
    """1x1 reduce, 3x3, 1x1 expand to ``4 * filters``, plus the (projected) shortcut."""
    p = layers
    shortcut = x
    if use_projection:
        shortcut = p.conv_bn_act(x, 4 * filters, 1, name=f"{name}_shortcut", activate=False)
    x = p.conv_bn_act(x, filters, 1, name=f"{name}_1")
    x = p.conv_bn_act(x, filters, 3, name=f"{name}_2")
    x = p.conv_bn_act(x, 4 * filters, 1, name=f"{name}_3", activate=False)
    return _finish(p, x, shortcut, drop_rate, name)


def residual(x, filters: int, *, use_projection: bool, drop_rate: float, layers: PlanBuilder, name: str):
    """Two 3x3 convolutions of ``filters`` channels, plus the (projected) shortcut."""
    p = layers
    shortcut = x
    if use_projection:
        shortcut = p.conv_bn_act(x, filters, 1, name=f"{name}_shortcut", activate=False)
    x = p.conv_bn_act(x, filters, 3, name=f"{name}_1")
    x = p.conv_bn_act(x, filters, 3, name=f"{name}_2", activate=False)
    return _finish(p, x, shortcut, drop_rate, name)


def _make_divisible(value: float, divisor: int = 1) -> int:
    # MobileNet rounding: to the nearest multiple, but never more than 10% down.
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def se_filters(in_channels: int, se_ratio: float) -> int:
    """Width of the squeeze-excitation bottleneck of an MBConv block reading ``in_channels``."""
    return _make_divisible(max(1, int(in_channels * se_ratio)))


def mbconv(x, filters: int, *, use_projection: bool, drop_rate: float, layers: PlanBuilder, name: str,
           strides: int = 1, kernel_size: int = 3, expand_ratio: int = 6, se_ratio: float = 0.2):
    """MBConv (inverted bottleneck): 1x1 expand, depthwise, squeeze-excitation, 1x1 project.

    The residual add (with stochastic depth) exists only when the input
    already has ``filters`` channels and the stride is 1; the block never
    projects a shortcut, so ``use_projection`` is ignored.
    """
    p = layers
    c_in = p.channels(x)
    shortcut = x
    expanded = c_in
    if expand_ratio > 1:
        expanded = _make_divisible(c_in * expand_ratio)
        x = p.conv_bn_act(x, expanded, 1, name=f"{name}_expand")
    x = p.norm(p.depthwise_conv(x, kernel_size, strides=strides, name=f"{name}_dw_conv"), name=f"{name}_dw_bn")
    x = p.act(x, name=f"{name}_dw_act")
    if se_ratio and 0 < se_ratio <= 1:
        s = p.mean(x, name=f"{name}_se_squeeze")
        s = p.act(p.conv(s, se_filters(c_in, se_ratio), 1, name=f"{name}_se_reduce", use_bias=True),
                  name=f"{name}_se_relu", activation="relu")
        s = p.act(p.conv(s, expanded, 1, name=f"{name}_se_expand", use_bias=True),
                  name=f"{name}_se_gate", activation="hard_sigmoid")
        x = p.multiply(x, s, name=f"{name}_se_excite")
    x = p.conv_bn_act(x, filters, 1, name=f"{name}_project", activate=False)
    if c_in == filters and strides == 1:
        if drop_rate > 0:
            x = p.drop(x, drop_rate, name=f"{name}_drop")
        x = p.add([shortcut, x], name=f"{name}_add")
    return x


# The built-in blocks are built and counted from these plans (their names live in search_spaces.block_fns).
implement_block_fn("bottleneck", plan=bottleneck)
implement_block_fn("residual", plan=residual)
implement_block_fn("mbconv", plan=mbconv)
