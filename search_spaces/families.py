"""Block families: the filter map, stem, resampling rule and block functions a genome is built with.

A genome names its family (``spinenet`` unless it says otherwise). The family
fixes what the genome's levels mean in channels, what the stem nodes are, and
how a parent is resampled to a block's level; the block functions a genome of
that family may use are those registered with ``family=<name>``. Pure Python.

Examples:
    >>> from search_spaces.families import get_family
    >>> get_family("mobile").stem_levels
    (1, 2)
"""

from __future__ import annotations

import dataclasses
import types
from typing import Mapping


class FamilyError(ValueError):
    """An unknown family name."""


@dataclasses.dataclass(frozen=True)
class BlockFamily:
    """What a family of scale-permuted networks shares.

    Attributes:
        name: the name genomes use (``family: mobile``).
        filter_size_map: base filters per level (scaled by ``filter_size_scale``);
            its keys bound the levels a block may take.
        stem: how the stem is built: ``"spinenet"`` (7x7 conv, max-pool, then
            the stem blocks at level 2) or ``"mobile"`` (3x3 conv, then stem
            blocks going from level 0's filters up to level 1, then level 2).
        stem_levels: the levels of the first stem nodes; further init blocks
            (where ``num_init_blocks`` may vary) take the last one.
        num_init_blocks: the stem blocks the family requires, or None for
            any number from 2.
        stem_block_fn: the block function of the stem when a genome gives none.
        resampling: ``"spinenet"`` (1x1 reduce by ``resample_alpha``, strided
            conv then max-pools, 1x1 expand) or ``"mobile"`` (strided 3x3
            depthwise convs, no reduction, 1x1 to the target width).
    """

    name: str
    filter_size_map: Mapping[int, int]
    stem: str
    stem_levels: tuple[int, ...]
    stem_block_fn: str
    resampling: str
    num_init_blocks: int | None = None

    def stem_node_levels(self, num_init_blocks: int) -> list[int]:
        """The level of each of ``num_init_blocks`` stem nodes."""
        levels = list(self.stem_levels[:num_init_blocks])
        return levels + [self.stem_levels[-1]] * (num_init_blocks - len(levels))

    @property
    def min_block_level(self) -> int:
        """The lowest level a block of this family may take."""
        return min(level for level in self.filter_size_map if level >= 1)

    @property
    def max_block_level(self) -> int:
        """The highest level a block of this family may take."""
        return max(self.filter_size_map)

    @property
    def block_fns(self) -> tuple[str, ...]:
        """The registered block functions genomes of this family may use."""
        from search_spaces.block_fns import BLOCK_FNS

        return tuple(sorted(name for name, fn in BLOCK_FNS.items() if fn.family == self.name))


DEFAULT_FAMILY = "spinenet"

FAMILIES: dict[str, BlockFamily] = {}


def register_family(family: BlockFamily) -> BlockFamily:
    """Make ``family`` available to genomes by its name."""
    FAMILIES[family.name] = dataclasses.replace(
        family, filter_size_map=types.MappingProxyType(dict(family.filter_size_map)))
    return FAMILIES[family.name]


def get_family(name: str) -> BlockFamily:
    """The family called ``name``, or :class:`FamilyError` listing the known ones."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise FamilyError(f"unknown block family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


register_family(BlockFamily(
    name="spinenet",
    filter_size_map={1: 32, 2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256},
    stem="spinenet",
    stem_levels=(2,),
    stem_block_fn="bottleneck",
    resampling="spinenet",
))

# Mobile SpineNet (Du et al., 2020): MobileNet-style widths, an MBConv stem
# whose first node sits at level 1, and depthwise-convolution resampling.
register_family(BlockFamily(
    name="mobile",
    filter_size_map={0: 8, 1: 16, 2: 24, 3: 40, 4: 80, 5: 112, 6: 112, 7: 112},
    stem="mobile",
    stem_levels=(1, 2),
    stem_block_fn="mbconv",
    resampling="mobile",
    num_init_blocks=2,
))
