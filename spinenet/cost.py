"""Analytic cost model: parameters and multiply-adds of a decoded genome, without TensorFlow.

The counts walk the layer plan (:mod:`spinenet.plan`) the decoder builds
from, so ``count_params`` equals Keras ``count_params()`` (batch-norm moving
statistics included) and ``count_multiply_adds`` sums the multiply-adds of
every convolution (depthwise included).

Examples:
    >>> from spinenet import SPINENET_49, SCALING_MAP
    >>> from spinenet.cost import count_params
    >>> count_params(SPINENET_49, **SCALING_MAP["49"])
    21920192
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

from search_spaces.genome import Genome
from spinenet.plan.counting import plan_cost
from spinenet.plan.network import plan_network
from spinenet.scaling import DecodeError, Scaling, check_input_size, spatial_divisor


@dataclasses.dataclass(frozen=True)
class Cost:
    """Parameter count and convolution multiply-adds of one network."""

    params: int
    multiply_adds: int


def network_cost(
    genome: Genome,
    input_size: Union[int, Sequence[int]] = 640,
    *,
    filter_size_scale: float = 1.0,
    resample_alpha: float = 0.5,
    block_repeats: int = 1,
    endpoints_num_filters: int = 256,
    input_channels: int = 3,
    scaling: Optional[Scaling] = None,
) -> Cost:
    """Parameters and multiply-adds of ``decode(genome, ...)`` at ``input_size`` (int or (H, W)).

    ``scaling`` (a :class:`~spinenet.scaling.Scaling`) replaces the four
    scaling keywords when given. The genome's family picks the filter map,
    stem and resampling.
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    check_input_size(genome, (height, width))
    if scaling is None:
        scaling = Scaling(filter_size_scale, resample_alpha, block_repeats, endpoints_num_filters, genome.family)
    elif scaling.family != genome.family:
        scaling = dataclasses.replace(scaling, family=genome.family)
    # The same layer plan the decoder builds from, so counts and Keras cannot drift.
    try:
        params, madds = plan_cost(plan_network(genome, scaling, input_channels), height, width)
    except DecodeError:
        raise
    except ValueError as err:
        raise DecodeError(str(err)) from None
    return Cost(params=params, multiply_adds=madds)


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

    Examples:
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
