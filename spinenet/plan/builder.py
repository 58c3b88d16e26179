"""The layer plan's data and its builder: :class:`PlanLayer`, :class:`Plan` and :class:`PlanBuilder` (no TensorFlow).

A plan is a list of :class:`PlanLayer` in build order; each names the layers
it reads (``"image"`` is the input) and knows its output channels and
resolution level (the input divided by ``2**level``; ``None`` for a globally
pooled 1x1 tensor).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from search_spaces.block_fns import BLOCK_FNS

INPUT = "image"

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
