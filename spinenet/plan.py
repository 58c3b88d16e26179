"""The layer plan: every layer a genome decodes to, as plain data (no TensorFlow).

The Keras decoder builds exactly these layers and the cost model counts
exactly these layers, so the two cannot drift apart. A plan is a list of
:class:`PlanLayer` in build order; each names the layers it reads (``"image"``
is the input) and knows its output channels and resolution level (the input
divided by ``2**level``; ``None`` for a globally pooled 1x1 tensor).

Built-in block functions (``bottleneck``, ``residual``, ``mbconv``) are
written once here against :class:`PlanBuilder`; a block function registered
with only a Keras ``build`` becomes one opaque ``custom`` layer, costed by its
registered ``count_params``/``count_multiply_adds``.

Examples:
    >>> from spinenet import SPINENET_49
    >>> from spinenet.plan import plan_network
    >>> from spinenet.scaling import Scaling
    >>> plan = plan_network(SPINENET_49, Scaling())
    >>> plan.layers[0].name, plan.layers[0].kind, plan.layers[0].kernel
    ('stem_conv', 'conv', 7)
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

from search_spaces.block_fns import BN_PARAMS_PER_CHANNEL, BLOCK_FNS, get_block_fn, implement_block_fn
from search_spaces.families import get_family
from search_spaces.genome import Genome

INPUT = "image"
# SpineNet's stem: a 7x7 stride-2 convolution to 64 channels, then a max-pool.
SPINENET_STEM_FILTERS = 64
SPINENET_STEM_KERNEL = 7
MOBILE_STEM_KERNEL = 3

KINDS = ("conv", "dwconv", "bn", "act", "maxpool", "upsample", "add", "mean", "mul", "drop", "custom")


@dataclasses.dataclass(frozen=True)
class PlanLayer:
    """One layer: its Keras name, kind, inputs, output channels and level, and settings.

    ``activation`` is empty for the network's own activation. A ``custom``
    layer is a whole registered block (``block_fn``, ``filters``,
    ``use_projection``) built by its Keras function.
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    in_channels: int
    channels: int
    level: Optional[int]
    kernel: int = 1
    strides: int = 1
    use_bias: bool = False
    activation: str = ""
    scale: int = 1
    rate: float = 0.0
    block_fn: str = ""
    filters: int = 0
    use_projection: bool = False


@dataclasses.dataclass(frozen=True)
class Plan:
    """Layers in build order and the layer giving each endpoint ``{level: name}``."""

    layers: tuple[PlanLayer, ...]
    endpoints: dict
    input_channels: int = 3


class PlanBuilder:
    """Records layers; tensors are layer names. Block functions call these methods.

    It offers the methods of :class:`spinenet.blocks.LayerSettings` that
    built-in blocks use, so a block is written once and both built and costed.
    """

    def __init__(self, input_channels: int = 3, input_level: int = 0, input_name: str = INPUT):
        self.layers: list[PlanLayer] = []
        self._shape = {input_name: (input_channels, input_level)}

    def channels(self, x: str) -> int:
        """Channels of tensor ``x``."""
        return self._shape[x][0]

    def level(self, x: str) -> Optional[int]:
        """Level of tensor ``x`` (None: pooled to 1x1)."""
        return self._shape[x][1]

    def _add(self, kind: str, name: str, inputs: Sequence[str], channels: int, level, **settings) -> str:
        if name in self._shape:
            raise ValueError(f"layer name {name!r} is used twice")
        layer = PlanLayer(name, kind, tuple(inputs), self.channels(inputs[0]), channels, level, **settings)
        self.layers.append(layer)
        self._shape[name] = (channels, level)
        return name

    def _strided(self, x: str, strides: int):
        level = self.level(x)
        return None if level is None else level + (strides.bit_length() - 1)

    def conv(self, x, filters: int, kernel_size: int, *, strides: int = 1, name: str, use_bias: bool = False):
        """'same'-padded convolution (bias-free unless ``use_bias``)."""
        return self._add("conv", name, [x], filters, self._strided(x, strides), kernel=kernel_size,
                         strides=strides, use_bias=use_bias)

    def depthwise_conv(self, x, kernel_size: int, *, strides: int = 1, name: str):
        """Bias-free 'same'-padded depthwise convolution (depth multiplier 1)."""
        return self._add("dwconv", name, [x], self.channels(x), self._strided(x, strides), kernel=kernel_size,
                         strides=strides)

    def norm(self, x, *, name: str):
        """Batch normalization."""
        return self._add("bn", name, [x], self.channels(x), self.level(x))

    def act(self, x, *, name: str, activation: str = ""):
        """The network's activation, or ``activation`` when given."""
        return self._add("act", name, [x], self.channels(x), self.level(x), activation=activation)

    def conv_bn_act(self, x, filters, kernel_size, *, strides=1, name: str, activate=True):
        """Convolution, batch norm and (optionally) activation, named ``name_conv/_bn/_act``."""
        x = self.norm(self.conv(x, filters, kernel_size, strides=strides, name=f"{name}_conv"), name=f"{name}_bn")
        return self.act(x, name=f"{name}_act") if activate else x

    def max_pool(self, x, *, name: str):
        """3x3 stride-2 'same' max-pool."""
        return self._add("maxpool", name, [x], self.channels(x), self.level(x) + 1, kernel=3, strides=2)

    def upsample(self, x, scale: int, *, name: str):
        """Nearest-neighbour upsampling by ``scale`` (a power of two)."""
        return self._add("upsample", name, [x], self.channels(x), self.level(x) - (scale.bit_length() - 1),
                         scale=scale)

    def add(self, xs: Sequence[str], *, name: str):
        """Element-wise sum."""
        return self._add("add", name, list(xs), self.channels(xs[0]), self.level(xs[0]))

    def mean(self, x, *, name: str):
        """Spatial mean, kept as a 1x1 tensor."""
        return self._add("mean", name, [x], self.channels(x), None)

    def multiply(self, x, gate, *, name: str):
        """``x`` times a (broadcast 1x1) ``gate``."""
        return self._add("mul", name, [x, gate], self.channels(x), self.level(x))

    def drop(self, x, rate: float, *, name: str):
        """Stochastic depth on a residual branch."""
        return self._add("drop", name, [x], self.channels(x), self.level(x), rate=float(rate))

    def custom(self, x, block_fn: str, filters: int, *, use_projection: bool, drop_rate: float, name: str):
        """A registered block with only a Keras build: one opaque layer."""
        channels = filters * BLOCK_FNS[block_fn].expansion
        return self._add("custom", name, [x], channels, self.level(x), block_fn=block_fn, filters=filters,
                         use_projection=use_projection, rate=float(drop_rate))


# ------------------------------------------------------------------ blocks
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


# ----------------------------------------------------------------- network
def block_group(p: PlanBuilder, x: str, block_fn: str, filters: int, repeats: int, drop_rate: float,
                name: str, strides: int = 1) -> str:
    """``repeats`` blocks of one function; only the first may project its shortcut or stride."""
    spec = get_block_fn(block_fn)
    out_channels = filters * spec.expansion
    for unit in range(1, repeats + 1):
        use_projection = unit == 1 and p.channels(x) != out_channels
        unit_name = f"{name}_unit{unit}"
        extra = {"strides": strides} if unit == 1 and strides != 1 else {}
        plan_fn = spec.resolve_plan()
        if plan_fn is None:
            if extra:
                raise ValueError(f"block fn {block_fn!r} has no plan and cannot stride (a {name} needs it)")
            x = p.custom(x, block_fn, filters, use_projection=use_projection, drop_rate=drop_rate, name=unit_name)
        else:
            x = plan_fn(x, filters, use_projection=use_projection, drop_rate=drop_rate, layers=p, name=unit_name,
                        **dict(spec.options), **extra)
        if p.channels(x) != out_channels:
            raise ValueError(f"block fn {block_fn!r} gave {p.channels(x)} channels in {name}, "
                             f"expected filters * expansion = {out_channels}")
    return x


def _spinenet_resample(p, x, parent_level, parent_fn, target_level, target_channels, scaling, name):
    width = scaling.resample_width(p.channels(x), parent_fn)
    x = p.conv_bn_act(x, width, 1, name=f"{name}_reduce")
    steps = target_level - parent_level
    if steps > 0:
        x = p.conv_bn_act(x, width, 3, strides=2, name=f"{name}_down")
        for pool in range(1, steps):
            x = p.max_pool(x, name=f"{name}_pool{pool}")
    elif steps < 0:
        x = p.upsample(x, 2 ** -steps, name=f"{name}_up")
    return p.conv_bn_act(x, target_channels, 1, name=f"{name}_expand", activate=False)


def _mobile_resample(p, x, parent_level, parent_fn, target_level, target_channels, scaling, name):
    steps = target_level - parent_level
    for step in range(1, steps + 1):
        x = p.norm(p.depthwise_conv(x, 3, strides=2, name=f"{name}_down{step}_conv"), name=f"{name}_down{step}_bn")
        x = p.act(x, name=f"{name}_down{step}_act")
    if steps < 0:
        x = p.upsample(x, 2 ** -steps, name=f"{name}_up")
    return p.conv_bn_act(x, target_channels, 1, name=f"{name}_expand", activate=False)


_RESAMPLERS: dict[str, Callable] = {"spinenet": _spinenet_resample, "mobile": _mobile_resample}


def _stem(p: PlanBuilder, genome: Genome, scaling) -> tuple[str, int]:
    """The stem's layers before its blocks; returns the tensor and its level."""
    family = get_family(genome.family)
    if family.stem == "spinenet":
        x = p.conv_bn_act(INPUT, SPINENET_STEM_FILTERS, SPINENET_STEM_KERNEL, strides=2, name="stem")
        return p.max_pool(x, name="stem_pool"), 2
    if family.stem == "mobile":
        x = p.conv_bn_act(INPUT, scaling.filters(0), MOBILE_STEM_KERNEL, strides=2, name="stem")
        return x, 1
    raise ValueError(f"family {family.name!r}: unknown stem {family.stem!r}")


def plan_network(genome: Genome, scaling, input_channels: int = 3, init_stochastic_depth_rate: float = 0.0) -> Plan:
    """Every layer ``decode(genome, ...)`` builds at ``scaling`` (a :class:`spinenet.scaling.Scaling`)."""
    family = get_family(genome.family)
    resample = _RESAMPLERS[family.resampling]
    graph = genome.resolve()
    p = PlanBuilder(input_channels)
    x, level = _stem(p, genome, scaling)
    features: dict[int, str] = {}
    num_blocks = len(genome.blocks)
    for node in graph.nodes:
        if not node.live:
            continue
        filters = scaling.filters(node.level)
        if node.block is None:
            source = features.get(node.index - 1, x)
            strides = 2 ** (node.level - p.level(source))
            features[node.index] = block_group(p, source, node.block_fn, filters, scaling.block_repeats, 0.0,
                                               name=f"stem_block{node.index + 1}", strides=strides)
            continue
        name = f"block{node.block}"
        channels = scaling.channels(node.level, node.block_fn)
        inputs = [
            resample(p, features[q], graph.nodes[q].level, graph.nodes[q].block_fn, node.level, channels, scaling,
                     f"{name}_in{j}_l{graph.nodes[q].level}")
            for j, q in enumerate(node.parents)
        ]
        inputs += [features[m] for m in node.merged]
        merged = p.act(p.add(inputs, name=f"{name}_merge"), name=f"{name}_merge_act")
        # Drop rates grow linearly with depth, as in the stochastic-depth paper.
        drop_rate = init_stochastic_depth_rate * node.block / num_blocks
        features[node.index] = block_group(p, merged, node.block_fn, filters, scaling.block_repeats, drop_rate,
                                           name=name)
    endpoints = {}
    for level, index in graph.endpoints.items():
        endpoints[level] = p.conv_bn_act(features[index], scaling.endpoints_num_filters, 1, name=f"endpoint{level}")
    return Plan(tuple(p.layers), endpoints, input_channels)


# -------------------------------------------------------------------- cost
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
    extra = {"strides": strides} if strides != 1 else {}
    spec.resolve_plan()("x", filters, use_projection=use_projection, drop_rate=0.0, layers=p, name="b",
                        **dict(spec.options), **extra)
    level_shift = strides.bit_length() - 1
    return plan_cost(Plan(tuple(p.layers), {}), height << level_shift, width << level_shift)
