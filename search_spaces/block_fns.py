"""Registry of block functions a genome may name.

A block function is described here in pure Python: its expansion (output
channels = filters * expansion), its analytic cost, and where its Keras
implementation lives. Keeping the description free of TensorFlow lets a genome
be validated, and a network be costed, without importing TensorFlow; the
decoder resolves ``build`` only when it actually builds a model.

Example:
    >>> from search_spaces.block_fns import register_block_fn, BLOCK_FNS
    >>> def plain(x, filters, *, use_projection, drop_rate, layers, name):
    ...     return layers.act(layers.norm(layers.conv(x, filters, 3, name=name + "_conv"),
    ...                                   name=name + "_bn"), name=name + "_act")
    >>> _ = register_block_fn(
    ...     "plain", expansion=1, build=plain,
    ...     count_params=lambda c_in, f, proj: 9 * c_in * f + 4 * f,
    ...     count_multiply_adds=lambda c_in, f, h, w, proj: h * w * 9 * c_in * f)
    >>> "plain" in BLOCK_FNS
    True
    >>> _ = BLOCK_FNS.pop("plain")
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Union

# Batch norm stores gamma, beta, moving mean and moving variance per channel;
# Keras ``count_params()`` counts all four.
BN_PARAMS_PER_CHANNEL = 4


@dataclasses.dataclass(frozen=True)
class BlockFn:
    """Description of one block function.

    Attributes:
        name: the name genomes use (``"bottleneck"``).
        expansion: output channels divided by the block's ``filters``.
        build: the Keras implementation, or ``"module:attribute"`` naming it.
            Called as ``build(x, filters, *, use_projection, drop_rate,
            layers, name)`` and returns a tensor with ``filters * expansion``
            channels at the input's resolution.
        count_params: ``(in_channels, filters, use_projection) -> int``, the
            block's Keras parameter count (batch-norm statistics included).
        count_multiply_adds: ``(in_channels, filters, height, width,
            use_projection) -> int``, convolution multiply-adds at that output
            size.
    """

    name: str
    expansion: int
    build: Union[str, Callable]
    count_params: Callable[[int, int, bool], int] | None = None
    count_multiply_adds: Callable[[int, int, int, int, bool], int] | None = None

    def resolve_build(self) -> Callable:
        """Return the Keras implementation, importing it if named by string."""
        if callable(self.build):
            return self.build
        module_name, _, attr = self.build.partition(":")
        return getattr(importlib.import_module(module_name), attr)


BLOCK_FNS: dict[str, BlockFn] = {}


def register_block_fn(
    name: str,
    *,
    expansion: int,
    build: Union[str, Callable],
    count_params: Callable[[int, int, bool], int] | None = None,
    count_multiply_adds: Callable[[int, int, int, int, bool], int] | None = None,
    overwrite: bool = False,
) -> BlockFn:
    """Register a block function under ``name`` so genomes may use it.

    ``count_params`` and ``count_multiply_adds`` are optional; without them the
    decoder still builds the block but the analytic cost model refuses genomes
    that use it.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"block fn name must be an identifier, got {name!r}")
    if name in BLOCK_FNS and not overwrite:
        raise ValueError(f"block fn {name!r} is already registered (pass overwrite=True)")
    if not isinstance(expansion, int) or expansion < 1:
        raise ValueError(f"block fn {name!r}: expansion must be a positive int, got {expansion!r}")
    spec = BlockFn(name, expansion, build, count_params, count_multiply_adds)
    BLOCK_FNS[name] = spec
    return spec


def _conv_bn_params(c_in: int, c_out: int, kernel: int) -> int:
    return kernel * kernel * c_in * c_out + BN_PARAMS_PER_CHANNEL * c_out


def _bottleneck_params(c_in: int, filters: int, use_projection: bool) -> int:
    total = (
        _conv_bn_params(c_in, filters, 1)
        + _conv_bn_params(filters, filters, 3)
        + _conv_bn_params(filters, 4 * filters, 1)
    )
    if use_projection:
        total += _conv_bn_params(c_in, 4 * filters, 1)
    return total


def _bottleneck_madds(c_in: int, filters: int, h: int, w: int, use_projection: bool) -> int:
    per_pixel = c_in * filters + 9 * filters * filters + filters * 4 * filters
    if use_projection:
        per_pixel += c_in * 4 * filters
    return h * w * per_pixel


def _residual_params(c_in: int, filters: int, use_projection: bool) -> int:
    total = _conv_bn_params(c_in, filters, 3) + _conv_bn_params(filters, filters, 3)
    if use_projection:
        total += _conv_bn_params(c_in, filters, 1)
    return total


def _residual_madds(c_in: int, filters: int, h: int, w: int, use_projection: bool) -> int:
    per_pixel = 9 * c_in * filters + 9 * filters * filters
    if use_projection:
        per_pixel += c_in * filters
    return h * w * per_pixel


register_block_fn(
    "bottleneck",
    expansion=4,
    build="spinenet.blocks:bottleneck",
    count_params=_bottleneck_params,
    count_multiply_adds=_bottleneck_madds,
)
register_block_fn(
    "residual",
    expansion=1,
    build="spinenet.blocks:residual",
    count_params=_residual_params,
    count_multiply_adds=_residual_madds,
)
