"""Registry of block functions a genome may name.

A block function is described here in pure Python: its name, its expansion
(output channels = filters * expansion), the family whose genomes may use it
and its fixed options. That is all a genome needs to be validated, so this
module imports nothing of TensorFlow or of :mod:`spinenet`. The architecture
registers the implementations where it defines them: ``spinenet.plan.block_plans``
attaches each built-in block's layer plan (from which the decoder builds and
the cost model counts it) with :func:`implement_block_fn`. A user block gives
its own ``build``/``plan`` and counts when registered.

Examples:
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
from typing import Any, Callable, Mapping, Union

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
            channels at the input's resolution. Optional when ``plan`` is given.
        count_params: ``(in_channels, filters, use_projection) -> int``, the
            block's Keras parameter count (batch-norm statistics included).
        count_multiply_adds: ``(in_channels, filters, height, width,
            use_projection) -> int``, convolution multiply-adds at that output
            size.
        plan: the block written against :class:`spinenet.plan.builder.PlanBuilder`
            (or ``"module:attribute"``), called like ``build`` with the
            builder as ``layers`` and ``options`` as keywords. The decoder
            builds and the cost model counts its layers, so a planned block
            needs neither ``build`` nor the count functions.
        family: the block family (:mod:`search_spaces.families`) whose genomes may use it.
        options: fixed keyword options of ``plan`` (e.g. ``kernel_size``), as sorted pairs.
        base: for a variant (same plan, other options), the name of the block fn it varies.
    """

    name: str
    expansion: int
    build: Union[str, Callable, None] = None
    count_params: Callable[[int, int, bool], int] | None = None
    count_multiply_adds: Callable[[int, int, int, int, bool], int] | None = None
    plan: Union[str, Callable, None] = None
    family: str = "spinenet"
    options: tuple = ()
    base: str = ""

    def resolve_build(self) -> Callable | None:
        """The Keras implementation (imported if named by string); None for a block built from its plan."""
        return None if self.build is None else _resolve(self.build)

    def resolve_plan(self) -> Callable | None:
        """Return the plan function (None for a Keras-only block, or one whose plan is not registered yet)."""
        return None if self.plan is None else _resolve(self.plan)


def _resolve(target: Union[str, Callable]) -> Callable:
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


BLOCK_FNS: dict[str, BlockFn] = {}


def register_block_fn(
    name: str,
    *,
    expansion: int,
    build: Union[str, Callable, None] = None,
    count_params: Callable[[int, int, bool], int] | None = None,
    count_multiply_adds: Callable[[int, int, int, int, bool], int] | None = None,
    plan: Union[str, Callable, None] = None,
    family: str = "spinenet",
    options: Mapping[str, Any] | None = None,
    base: str = "",
    overwrite: bool = False,
) -> BlockFn:
    """Register a block function under ``name`` so genomes of ``family`` may use it.

    Give ``plan`` (a block written against the layer plan), or ``build`` (a
    Keras function) with optional ``count_params`` and
    ``count_multiply_adds``; without counts the decoder still builds the block
    but the analytic cost model refuses genomes that use it. With neither,
    the name is vocabulary only: genomes may name it, and an implementation
    is attached later with :func:`implement_block_fn`.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"block fn name must be an identifier, got {name!r}")
    if name in BLOCK_FNS and not overwrite:
        raise ValueError(f"block fn {name!r} is already registered (pass overwrite=True)")
    if not isinstance(expansion, int) or expansion < 1:
        raise ValueError(f"block fn {name!r}: expansion must be a positive int, got {expansion!r}")
    spec = BlockFn(name, expansion, build, count_params, count_multiply_adds, plan, family,
                   tuple(sorted((options or {}).items())), base)
    BLOCK_FNS[name] = spec
    return spec


def implement_block_fn(name: str, *, plan: Union[str, Callable, None] = None,
                       build: Union[str, Callable, None] = None) -> BlockFn:
    """Attach ``plan`` (and/or a Keras ``build``) to the registered block ``name`` and to its variants.

    The architecture calls this where it defines a built-in block
    (``spinenet.plan.block_plans``), so the vocabulary never imports the architecture.
    """
    implemented = None
    for other in list(BLOCK_FNS.values()):
        if other.name == name or other.base == name:
            changes = {key: value for key, value in (("plan", plan), ("build", build)) if value is not None}
            BLOCK_FNS[other.name] = dataclasses.replace(other, **changes)
            if other.name == name:
                implemented = BLOCK_FNS[name]
    if implemented is None:
        get_block_fn(name)  # raises, naming the registered ones
    return implemented


def register_block_variant(name: str, base: str, **options) -> BlockFn:
    """Register ``name`` as ``base`` with some of its options changed (e.g. ``kernel_size=5``)."""
    parent = get_block_fn(base)
    unknown = sorted(set(options) - {key for key, _ in parent.options})
    if unknown:
        raise ValueError(f"block fn {base!r} has no option(s) {unknown}")
    return register_block_fn(name, expansion=parent.expansion, build=parent.build, plan=parent.plan,
                             family=parent.family, options={**dict(parent.options), **options}, base=base)


def find_block_variant(base: str, **options) -> str:
    """The registered block fn that is ``base`` (or one of its variants) with these options."""
    wanted = {**dict(get_block_fn(base).options), **options}
    for spec in BLOCK_FNS.values():
        if (spec.base or spec.name) == base and dict(spec.options) == wanted:
            return spec.name
    raise KeyError(f"no block fn is {base!r} with {options}; register one with register_block_variant")


def get_block_fn(name: str) -> BlockFn:
    """Return the registered block function ``name`` or raise ``KeyError``."""
    try:
        return BLOCK_FNS[name]
    except KeyError:
        known = ", ".join(sorted(BLOCK_FNS))
        raise KeyError(f"unknown block fn {name!r} (registered: {known})") from None


# The built-in vocabulary; ``spinenet.plan.block_plans`` registers how each is built and counted.
register_block_fn("bottleneck", expansion=4)
register_block_fn("residual", expansion=1)
# Mobile SpineNet's block: expand ratio 6, 3x3 depthwise, squeeze-excitation 0.2.
register_block_fn("mbconv", expansion=1, family="mobile", options={"kernel_size": 3, "expand_ratio": 6, "se_ratio": 0.2})
# The variants a mobile search picks from per block ("mbconv" is kernel 3, expand 6).
for _kernel, _expand in ((3, 3), (5, 3), (5, 6)):
    register_block_variant(f"mbconv_k{_kernel}_e{_expand}", "mbconv", kernel_size=_kernel, expand_ratio=_expand)
