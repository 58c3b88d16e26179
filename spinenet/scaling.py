"""Scaling settings and the channel arithmetic they imply (pure Python).

The decoder and the analytic cost model both read widths from here, so the
two cannot disagree on how many filters a node or a resampling branch has.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from search_spaces.block_fns import BLOCK_FNS
from search_spaces.families import FamilyError, get_family
from search_spaces.genome import Genome

# SpineNet's stem convolution width (kept for imports; the layer plan owns the stems).
STEM_FILTERS = 64


class DecodeError(ValueError):
    """Settings or an input shape that no backbone can be built from."""


@dataclasses.dataclass(frozen=True)
class Scaling:
    """How wide and deep a genome is decoded (the ``SCALING_MAP`` fields), in a block family's filter map."""

    filter_size_scale: float = 1.0
    resample_alpha: float = 0.5
    block_repeats: int = 1
    endpoints_num_filters: int = 256
    family: str = "spinenet"

    def __post_init__(self):
        if not (isinstance(self.filter_size_scale, (int, float)) and self.filter_size_scale > 0):
            raise DecodeError(f"filter_size_scale must be a positive number, got {self.filter_size_scale!r}")
        if not (isinstance(self.resample_alpha, (int, float)) and self.resample_alpha > 0):
            raise DecodeError(f"resample_alpha must be a positive number, got {self.resample_alpha!r}")
        for name in ("block_repeats", "endpoints_num_filters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DecodeError(f"{name} must be a positive integer, got {value!r}")
        try:
            filter_map = get_family(self.family).filter_size_map
        except FamilyError as err:
            raise DecodeError(str(err)) from None
        narrowest = min(filter_map, key=lambda level: (filter_map[level], level))
        if int(filter_map[narrowest] * self.filter_size_scale) < 1:
            raise DecodeError(
                f"filter_size_scale {self.filter_size_scale} leaves level-{narrowest} blocks with no filters")

    def filters(self, level: int) -> int:
        """Filters of a block at ``level`` (its output has ``filters * expansion`` channels)."""
        return int(get_family(self.family).filter_size_map[level] * self.filter_size_scale)

    def channels(self, level: int, block_fn: str) -> int:
        """Output channels of a block at ``level`` built with ``block_fn``."""
        return self.filters(level) * BLOCK_FNS[block_fn].expansion

    def resample_width(self, parent_channels: int, parent_fn: str) -> int:
        """Width of a resampling branch: the parent's filters times ``resample_alpha``."""
        width = int(parent_channels / BLOCK_FNS[parent_fn].expansion * self.resample_alpha)
        if width < 1:
            raise DecodeError(
                f"resample_alpha {self.resample_alpha} leaves a {parent_fn} parent of "
                f"{parent_channels} channels with a 0-wide resampling branch"
            )
        return width


def spatial_divisor(genome: Genome) -> int:
    """Input height and width must be multiples of this (2 ** deepest level)."""
    return 2 ** max(genome.block_levels + [genome.max_level])


def check_input_size(genome: Genome, sizes: Sequence) -> None:
    """Raise :class:`DecodeError` unless every known spatial size divides by the deepest stride."""
    divisor = spatial_divisor(genome)
    for axis, size in zip(("height", "width"), sizes):
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise DecodeError(f"input {axis} must be a positive integer or None, got {size!r}")
        if size % divisor:
            raise DecodeError(
                f"input {axis} {size} is not divisible by {divisor} (2**{divisor.bit_length() - 1}, "
                f"the deepest level of this genome); try {max(divisor, round(size / divisor) * divisor)}"
            )
