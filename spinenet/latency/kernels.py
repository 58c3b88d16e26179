"""The kernels a LiteRT model of a plan runs: a plan's layers after the converter's folding and fusion.

LiteRT's converter folds inference batch norm into the convolution before it
and fuses a ReLU or ReLU6 into the convolution or addition it follows, so
those layers cost nothing of their own; other activations (swish, sigmoid)
stay separate kernels. A :class:`Kernel` is what one measured time is keyed
by: its op, shapes and settings.

Examples:
    >>> from spinenet import SPINENET_MOBILE_49
    >>> from spinenet.plan.network import plan_network
    >>> from spinenet.scaling import Scaling
    >>> kernels = plan_kernels(plan_network(SPINENET_MOBILE_49, Scaling(family="mobile")).layers, 256, 256, "swish")
    >>> kernels[0].key
    'conv k3 s2 3>8 256x256 +none'
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

# Activations LiteRT fuses into a convolution or an addition.
FUSED_ACTIVATIONS = ("relu", "relu6")

OPS = ("conv", "dwconv", "add", "maxpool", "upsample", "mean", "mul", "act", "bn", "dense", "detect")


class UnplannableLayer(ValueError):
    """A layer with no kernel model (a block registered with only a Keras build); the message names it."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One kernel: ``op`` on an input of ``height`` x ``width`` x ``in_channels`` giving ``channels``.

    ``act`` is the fused activation (``none``, ``relu``, ``relu6``) of a
    convolution or addition, or the function of an ``act`` kernel.
    ``inputs`` counts an addition's operands; ``extra`` holds a head's
    own settings (a detection post-process's anchors, classes and limits).
    """

    op: str
    height: int
    width: int
    in_channels: int
    channels: int
    kernel: int = 1
    strides: int = 1
    act: str = "none"
    inputs: int = 1
    scale: int = 1
    extra: tuple = ()

    @property
    def key(self) -> str:
        """The table key: every setting the kernel's time depends on."""
        text = (f"{self.op} k{self.kernel} s{self.strides} {self.in_channels}>{self.channels} "
                f"{self.height}x{self.width} +{self.act}")
        if self.inputs != 1:
            text += f" n{self.inputs}"
        if self.scale != 1:
            text += f" x{self.scale}"
        if self.extra:
            text += " " + ",".join(f"{k}={v}" for k, v in self.extra)
        return text

    @property
    def out_height(self) -> int:
        """Output height."""
        return self._out_side(self.height)

    @property
    def out_width(self) -> int:
        """Output width."""
        return self._out_side(self.width)

    def _out_side(self, side: int) -> int:
        if self.op in ("mean", "dense"):
            return 1
        if self.op == "upsample":
            return side * self.scale
        return -(-side // self.strides)

    @property
    def multiply_adds(self) -> int:
        """Multiply-adds (convolutions and dense layers; one per output element otherwise)."""
        out = self.out_height * self.out_width
        if self.op == "conv":
            return out * self.kernel * self.kernel * self.in_channels * self.channels
        if self.op == "dwconv":
            return out * self.kernel * self.kernel * self.channels
        if self.op == "dense":
            return self.in_channels * self.channels
        return out * self.channels * max(self.inputs - 1, 1)

    @property
    def elements(self) -> int:
        """Elements read and written (every input and the output), what a memory-bound kernel's time follows."""
        read = self.height * self.width * self.in_channels * self.inputs
        return read + self.out_height * self.out_width * self.channels


def _side(size: int, level: Optional[int]) -> int:
    return 1 if level is None else -(-size // 2**level)


def plan_kernels(layers: Iterable, height: int, width: int, activation: str = "relu") -> list[Kernel]:
    """The kernels LiteRT runs for plan ``layers`` (:class:`~spinenet.plan.builder.PlanLayer`) on ``height`` x ``width``.

    ``activation`` is the network's (what an ``act`` layer without its own
    means). Stochastic depth is the identity at inference and has no kernel.
    Raises :class:`UnplannableLayer` for an opaque ``custom`` block.
    """
    layers = list(layers)
    producer = {layer.name: layer for layer in layers}
    kernels: list[Kernel] = []
    owner: dict[str, int] = {}  # layer name -> index of the kernel whose output it is (folded layers too)
    for layer in layers:
        source = producer.get(layer.inputs[0]) if layer.inputs else None
        h = _side(height, source.level if source is not None else 0) if layer.inputs else height
        w = _side(width, source.level if source is not None else 0) if layer.inputs else width
        if layer.kind in ("conv", "dwconv"):
            strides = layer.strides if source is None or source.level is not None else 1
            owner[layer.name] = len(kernels)
            kernels.append(Kernel(layer.kind, h, w, layer.in_channels, layer.channels, layer.kernel, strides))
        elif layer.kind == "bn":
            if source is not None and source.kind in ("conv", "dwconv") and layer.inputs[0] in owner:
                owner[layer.name] = owner[layer.inputs[0]]  # folded into the convolution's weights
            else:
                owner[layer.name] = len(kernels)
                kernels.append(Kernel("bn", h, w, layer.channels, layer.channels))
        elif layer.kind == "act":
            function = layer.activation or activation
            fused_into = owner.get(layer.inputs[0])
            target = kernels[fused_into] if fused_into is not None else None
            if (function in FUSED_ACTIVATIONS and target is not None and target.op in ("conv", "dwconv", "add")
                    and target.act == "none" and _sole_reader(layers, layer.inputs[0], layer.name)):
                kernels[fused_into] = dataclasses.replace(target, act=function)
                owner[layer.name] = fused_into
            else:
                owner[layer.name] = len(kernels)
                kernels.append(Kernel("act", h, w, layer.channels, layer.channels, act=function))
        elif layer.kind == "drop":
            if layer.inputs[0] in owner:
                owner[layer.name] = owner[layer.inputs[0]]
        elif layer.kind == "add":
            owner[layer.name] = len(kernels)
            kernels.append(Kernel("add", h, w, layer.channels, layer.channels, inputs=len(layer.inputs)))
        elif layer.kind == "maxpool":
            owner[layer.name] = len(kernels)
            kernels.append(Kernel("maxpool", h, w, layer.channels, layer.channels, layer.kernel, layer.strides))
        elif layer.kind == "upsample":
            owner[layer.name] = len(kernels)
            kernels.append(Kernel("upsample", h, w, layer.channels, layer.channels, scale=layer.scale))
        elif layer.kind == "mean":
            owner[layer.name] = len(kernels)
            kernels.append(Kernel("mean", h, w, layer.channels, layer.channels))
        elif layer.kind == "mul":
            owner[layer.name] = len(kernels)
            kernels.append(Kernel("mul", h, w, layer.channels, layer.channels, inputs=2))
        elif layer.kind == "custom":
            raise UnplannableLayer(f"layer {layer.name}: block fn {layer.block_fn!r} has only a Keras build, so "
                                   "its kernels are unknown; the latency predictor needs a plan-backed block "
                                   "(or use measured latency)")
        else:
            raise UnplannableLayer(f"layer {layer.name}: no kernel model for kind {layer.kind!r}")
    return kernels


def _sole_reader(layers: list, name: str, reader: str) -> bool:
    # A ReLU fuses only when nothing else reads the pre-activation tensor.
    return all(layer.name == reader or name not in layer.inputs for layer in layers)


__all__ = ["FUSED_ACTIVATIONS", "Kernel", "OPS", "UnplannableLayer", "plan_kernels"]
