"""Which genomes the TF Model Garden's ``SpineNet`` and ``SpineNetMobile`` can build (pure Python, no TensorFlow).

The Model Garden export (:mod:`spinenet.model_garden_export`) and the
checkpoint layout (:mod:`spinenet.model_garden_layout`) both need the same
answer, so it is given here once.

Examples:
    >>> from spinenet import SPINENET_49
    >>> check_buildable(SPINENET_49)
    >>> model_garden_backbone(SPINENET_49).name
    'SpineNet'
    >>> model_garden_block_fn("mbconv", BACKBONES["spinenet"]) is None
    True
"""

from __future__ import annotations

import dataclasses

from search_spaces.block_fns import get_block_fn
from search_spaces.genome import Genome
from spinenet.scaling import DecodeError


class ModelGardenError(DecodeError):
    """A genome or setting the Model Garden cannot build or train as asked; the message names it."""


@dataclasses.dataclass(frozen=True)
class ModelGardenBackbone:
    """One Model Garden backbone class and the block functions it is built of (its stem's first)."""

    name: str
    module: str
    block_fns: tuple[str, ...]

    @property
    def stem_block_fn(self) -> str:
        """The one block function the backbone builds its stem blocks with."""
        return self.block_fns[0]


# The Model Garden backbone of each block family (official/vision/modeling/backbones/<module>.py).
BACKBONES = {
    "spinenet": ModelGardenBackbone("SpineNet", "spinenet", ("bottleneck", "residual")),
    "mobile": ModelGardenBackbone("SpineNetMobile", "spinenet_mobile", ("mbconv",)),
}


def model_garden_backbone(genome: Genome) -> ModelGardenBackbone:
    """The Model Garden backbone of ``genome``'s family, or a :class:`ModelGardenError`."""
    if genome.family not in BACKBONES:
        raise ModelGardenError(f"block family {genome.family!r} has no Model Garden backbone "
                               f"(it has one for {', '.join(BACKBONES)})")
    return BACKBONES[genome.family]


def model_garden_block_fn(name: str, backbone: ModelGardenBackbone) -> str | None:
    """The backbone's block function that ``name`` builds (itself, or the base of a variant with its options), or None."""
    if name in backbone.block_fns:
        return name
    spec = get_block_fn(name)
    if spec.base in backbone.block_fns and dict(spec.options) == dict(get_block_fn(spec.base).options):
        return spec.base
    return None


def check_buildable(genome: Genome, block_repeats: int = 1) -> None:
    """Raise :class:`ModelGardenError` unless the Model Garden's backbone builds ``genome`` with ``block_repeats``.

    The backbones have two stem blocks of one fixed function and know only
    their own block functions; ``SpineNetMobile`` lowers every block above
    ``max_level`` to it and chains no block repeats, which a genome here does
    not do.
    """
    backbone = model_garden_backbone(genome)
    if genome.num_init_blocks != 2:
        raise ModelGardenError(f"the Model Garden's {backbone.name} has 2 stem blocks, this genome "
                               f"{genome.num_init_blocks}")
    if model_garden_block_fn(genome.init_block_fn, backbone) != backbone.stem_block_fn:
        raise ModelGardenError(f"the stem blocks are {genome.init_block_fn!r}; the Model Garden's {backbone.name} "
                               f"builds its stem of {backbone.stem_block_fn!r} blocks")
    mobile = genome.family == "mobile"
    # Every block, reachable or not: the Model Garden builds them all before Keras drops the dead ones.
    for number, block in enumerate(genome.blocks, start=1):
        if model_garden_block_fn(block.block_fn, backbone) is None:
            raise ModelGardenError(f"block {number} is {block.block_fn!r}, which the Model Garden's {backbone.name} "
                                   f"does not have (it builds {', '.join(backbone.block_fns)})")
        if mobile and block.level > genome.max_level:
            raise ModelGardenError(
                f"block {number} is at level {block.level}, above max_level {genome.max_level}: the Model Garden's "
                f"{backbone.name} would build it at level {genome.max_level}")
    if mobile and block_repeats != 1:
        # SpineNetMobile._block_group feeds every repeat the group's input, so it keeps only the last.
        raise ModelGardenError(f"the Model Garden's {backbone.name} chains no block repeats (block_repeats must be "
                               f"1, got {block_repeats})")


__all__ = ["BACKBONES", "ModelGardenBackbone", "ModelGardenError", "check_buildable", "model_garden_backbone",
           "model_garden_block_fn"]
