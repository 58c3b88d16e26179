"""The structural rules every genome keeps, and :class:`GenomeError`, raised naming the first one broken.

Levels inside the family's filter map, one output block per endpoint level,
two distinct parents per block that come before it, and block functions of
the genome's family.
"""

from __future__ import annotations

from typing import Any

from nas.config import closest
from search_spaces.block_fns import BLOCK_FNS
from search_spaces.families import get_family

# How close a misspelt genome key or block fn must be to be suggested (difflib's default).
SUGGESTION_CUTOFF = 0.6


class GenomeError(ValueError):
    """A genome breaks a structural rule; the message names the block and the rule."""


def suggest(key: str, valid) -> str:
    """`` (did you mean ...?)`` for a misspelt genome key or block fn, or an empty string."""
    return closest(key, valid, cutoff=SUGGESTION_CUTOFF)


def check_int(value: Any, where: str) -> int:
    """``value`` when it is an integer (not a bool), else a :class:`GenomeError` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenomeError(f"{where} must be an integer, got {value!r}")
    return value


def check_genome(genome) -> None:
    """Raise :class:`GenomeError` for the first rule ``genome`` (a :class:`~search_spaces.genome.Genome`) breaks."""
    check_int(genome.min_level, "min_level")
    check_int(genome.max_level, "max_level")
    family = get_family(genome.family)
    levels = [family.min_block_level, family.max_block_level]
    if not levels[0] <= genome.min_level <= genome.max_level <= levels[-1]:
        raise GenomeError(
            f"need {levels[0]} <= min_level <= max_level <= {levels[-1]}, "
            f"got min_level={genome.min_level}, max_level={genome.max_level}"
        )
    if check_int(genome.num_init_blocks, "stem num_init_blocks") < 2:
        raise GenomeError(
            f"stem num_init_blocks must be at least 2 (each block needs two "
            f"distinct parents), got {genome.num_init_blocks}"
        )
    if family.num_init_blocks is not None and genome.num_init_blocks != family.num_init_blocks:
        raise GenomeError(f"stem num_init_blocks must be {family.num_init_blocks} in the "
                          f"{family.name} family, got {genome.num_init_blocks}")
    if genome.init_block_fn not in BLOCK_FNS:
        raise GenomeError(
            f"stem: unknown block fn {genome.init_block_fn!r}"
            f"{suggest(genome.init_block_fn, BLOCK_FNS)}; registered: {', '.join(sorted(BLOCK_FNS))}"
        )
    _check_family(genome.init_block_fn, family.name, "stem")
    if not genome.blocks:
        raise GenomeError("genome has no blocks")
    outputs: dict[int, int] = {}
    for number, block in enumerate(genome.blocks, start=1):
        where = f"block {number}"
        node = genome.num_init_blocks + number - 1
        check_int(block.level, f"{where}: level")
        if not levels[0] <= block.level <= levels[1]:
            raise GenomeError(
                f"{where}: level {block.level} is outside the filter map "
                f"(levels {levels[0]}..{levels[-1]})"
            )
        if not isinstance(block.block_fn, str) or block.block_fn not in BLOCK_FNS:
            raise GenomeError(
                f"{where}: unknown block fn {block.block_fn!r}"
                f"{suggest(block.block_fn, BLOCK_FNS)}; registered: {', '.join(sorted(BLOCK_FNS))}"
            )
        _check_family(block.block_fn, family.name, where)
        if len(block.input_offsets) != 2:
            raise GenomeError(
                f"{where}: needs exactly 2 input offsets, got {list(block.input_offsets)}"
            )
        for offset in block.input_offsets:
            check_int(offset, f"{where}: input offset")
            if offset < 0:
                raise GenomeError(f"{where}: input offset {offset} is negative")
            if offset >= node:
                what = "itself" if offset == node else "a later node"
                raise GenomeError(
                    f"{where} (node {node}): input offset {offset} points at {what}; "
                    f"offsets must be below {node}"
                )
        if block.input_offsets[0] == block.input_offsets[1]:
            raise GenomeError(
                f"{where}: repeated parent {block.input_offsets[0]}; the two inputs must differ"
            )
        if not isinstance(block.is_output, bool):
            raise GenomeError(f"{where}: is_output must be true or false, got {block.is_output!r}")
        if block.is_output:
            if not genome.min_level <= block.level <= genome.max_level:
                raise GenomeError(
                    f"{where}: output at level {block.level} is outside "
                    f"[min_level, max_level] = [{genome.min_level}, {genome.max_level}]"
                )
            if block.level in outputs:
                raise GenomeError(
                    f"{where}: duplicate output level {block.level} "
                    f"(block {outputs[block.level]} is already the level-{block.level} output)"
                )
            outputs[block.level] = number
    missing = [l for l in range(genome.min_level, genome.max_level + 1) if l not in outputs]
    if missing:
        raise GenomeError(
            f"no output block for level(s) {missing}; each level in "
            f"[{genome.min_level}, {genome.max_level}] needs exactly one"
        )


def _check_family(block_fn: str, family: str, where: str) -> None:
    owner = BLOCK_FNS[block_fn].family
    if owner != family:
        allowed = ", ".join(sorted(n for n, fn in BLOCK_FNS.items() if fn.family == family))
        raise GenomeError(f"{where}: block fn {block_fn!r} belongs to the {owner} family, not {family} "
                          f"(set the genome's family, or use one of: {allowed})")
