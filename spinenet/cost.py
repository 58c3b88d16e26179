"""Analytic cost model: parameters and multiply-adds of a decoded genome, without TensorFlow.

The counts follow the decoder layer by layer, so ``count_params`` equals
Keras ``count_params()`` (batch-norm moving statistics included) and
``count_multiply_adds`` sums the multiply-adds of every convolution.

Example:
    >>> from spinenet import SPINENET_49, SCALING_MAP
    >>> from spinenet.cost import count_params
    >>> count_params(SPINENET_49, **SCALING_MAP["49"])
    21920192
"""

from __future__ import annotations

import dataclasses
from typing import Sequence, Union

from search_spaces.block_fns import BN_PARAMS_PER_CHANNEL, BLOCK_FNS, BlockFn
from search_spaces.genome import Genome
from spinenet.scaling import STEM_FILTERS, DecodeError, Scaling, check_input_size, spatial_divisor

_STEM_KERNEL = 7


@dataclasses.dataclass(frozen=True)
class Cost:
    """Parameter count and convolution multiply-adds of one network."""

    params: int
    multiply_adds: int


def _costed(fn_name: str) -> BlockFn:
    block_fn = BLOCK_FNS[fn_name]
    if block_fn.count_params is None or block_fn.count_multiply_adds is None:
        raise DecodeError(
            f"block fn {fn_name!r} was registered without count_params/count_multiply_adds; "
            "the cost model cannot count it"
        )
    return block_fn


def _group_cost(fn_name: str, c_in: int, filters: int, repeats: int, h: int, w: int) -> Cost:
    block_fn = _costed(fn_name)
    c_out = filters * block_fn.expansion
    params = madds = 0
    for unit in range(repeats):
        unit_in = c_in if unit == 0 else c_out
        projection = unit == 0 and c_in != c_out
        params += block_fn.count_params(unit_in, filters, projection)
        madds += block_fn.count_multiply_adds(unit_in, filters, h, w, projection)
    return Cost(params, madds)


def _conv_bn(c_in: int, c_out: int, kernel: int, h: int, w: int) -> Cost:
    return Cost(
        kernel * kernel * c_in * c_out + BN_PARAMS_PER_CHANNEL * c_out,
        h * w * kernel * kernel * c_in * c_out,
    )


def _side(size: int, level: int) -> int:
    return -(-size // 2**level)


def network_cost(
    genome: Genome,
    input_size: Union[int, Sequence[int]] = 640,
    *,
    filter_size_scale: float = 1.0,
    resample_alpha: float = 0.5,
    block_repeats: int = 1,
    endpoints_num_filters: int = 256,
    input_channels: int = 3,
) -> Cost:
    """Parameters and multiply-adds of ``decode(genome, ...)`` at ``input_size`` (int or (H, W))."""
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    check_input_size(genome, (height, width))
    scaling = Scaling(filter_size_scale, resample_alpha, block_repeats, endpoints_num_filters)
    graph = genome.resolve()

    def hw(level: int) -> tuple[int, int]:
        return _side(height, level), _side(width, level)

    total = [0, 0]

    def add(cost: Cost) -> None:
        total[0] += cost.params
        total[1] += cost.multiply_adds

    add(_conv_bn(input_channels, STEM_FILTERS, _STEM_KERNEL, *hw(1)))
    channels: list[int] = []
    for node in graph.nodes:
        filters = scaling.filters(node.level)
        if node.block is None:
            c_in = channels[-1] if channels else STEM_FILTERS
        else:
            c_in = scaling.channels(node.level, node.block_fn)
            if node.live:
                for parent in node.parents:
                    add(_resample_cost(graph.nodes[parent], channels[parent], node, c_in, scaling, hw))
        if node.live:
            add(_group_cost(node.block_fn, c_in, filters, scaling.block_repeats, *hw(node.level)))
        channels.append(scaling.channels(node.level, node.block_fn))
    for level, index in graph.endpoints.items():
        add(_conv_bn(channels[index], scaling.endpoints_num_filters, 1, *hw(level)))
    return Cost(params=total[0], multiply_adds=total[1])


def _resample_cost(parent, parent_channels, target, target_channels, scaling, hw) -> Cost:
    width = scaling.resample_width(parent_channels, parent.block_fn)
    parts = [_conv_bn(parent_channels, width, 1, *hw(parent.level))]
    if parent.level < target.level:
        # One strided 3x3 conv, then parameter-free max-pools for the remaining levels.
        parts.append(_conv_bn(width, width, 3, *hw(parent.level + 1)))
    parts.append(_conv_bn(width, target_channels, 1, *hw(target.level)))
    return Cost(sum(p.params for p in parts), sum(p.multiply_adds for p in parts))


def count_params(genome: Genome, **scaling) -> int:
    """Keras ``count_params()`` of the decoded backbone (independent of input size)."""
    return network_cost(genome, spatial_divisor(genome), **scaling).params


def count_multiply_adds(genome: Genome, input_size: Union[int, Sequence[int]] = 640, **scaling) -> int:
    """Convolution multiply-adds of the decoded backbone for one image of ``input_size``."""
    return network_cost(genome, input_size, **scaling).multiply_adds


class CostBudget:
    """A constraint on parameters and/or multiply-adds, checked with the cost model.

    Calling it on a genome returns one value per limit, ``cost / limit - 1``:
    feasible when every value is <= 0, the convention of Optuna's
    ``constraints_func``. Pass it as ``ScalePermutedSpace.sample(trial,
    constraint=budget)`` to keep a search inside the budget without building
    a model.

    Example:
        >>> from spinenet import SPINENET_49
        >>> budget = CostBudget(max_multiply_adds=20e9, input_size=640)
        >>> budget(SPINENET_49)[0] > 0  # 28.3 G is over 20 G
        True
    """

    def __init__(self, *, max_params: float | None = None, max_multiply_adds: float | None = None,
                 input_size: Union[int, Sequence[int]] = 640, **scaling):
        if max_params is None and max_multiply_adds is None:
            raise ValueError("CostBudget needs max_params and/or max_multiply_adds")
        for name, limit in (("max_params", max_params), ("max_multiply_adds", max_multiply_adds)):
            if limit is not None and not limit > 0:
                raise ValueError(f"{name} must be positive, got {limit!r}")
        self.max_params = max_params
        self.max_multiply_adds = max_multiply_adds
        self.input_size = input_size
        self.scaling = scaling

    def cost(self, genome: Genome) -> Cost:
        """The genome's cost at this budget's input size and scaling."""
        return network_cost(genome, self.input_size, **self.scaling)

    def __call__(self, genome: Genome) -> list[float]:
        cost = self.cost(genome)
        values = []
        if self.max_params is not None:
            values.append(cost.params / self.max_params - 1.0)
        if self.max_multiply_adds is not None:
            values.append(cost.multiply_adds / self.max_multiply_adds - 1.0)
        return values


__all__ = ["Cost", "CostBudget", "count_multiply_adds", "count_params", "network_cost"]
