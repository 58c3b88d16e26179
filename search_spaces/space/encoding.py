"""The integer parameters of a space and the genomes they map to, both ways.

Names and ranges depend only on the space's settings, never on other
choices; parent pairs and level orders are indices (orders as Lehmer codes).

Examples:
    >>> lehmer_encode([2, 0, 1])
    [2, 0]
    >>> lehmer_decode([2, 0], 3)
    [2, 0, 1]
"""

from __future__ import annotations

import functools
import itertools
from typing import Mapping, Sequence

from search_spaces.block_fns import BLOCK_FNS, find_block_variant
from search_spaces.block_spec import BlockSpec
from search_spaces.genome import Genome
from search_spaces.space.errors import SpaceError

# The parameter-name prefix of each kind of choice (a searched block option's prefix is its name).
PARAMETER_PREFIXES = {
    "swap_intermediate": "order_",
    "swap_output": "output_order_",
    "parents": "parents_",
    "level_shift": "level_shift_",
    "block_fn": "block_fn_",
}


def lehmer_decode(code: Sequence[int], n: int) -> list[int]:
    """The order of ``range(n)`` a Lehmer code (of ``n - 1`` digits, or fewer) describes."""
    remaining = list(range(n))
    order = [remaining.pop(digit) for digit in code]
    return order + remaining


def lehmer_encode(order: Sequence[int]) -> list[int]:
    """The Lehmer code of an order (its last digit, always 0, left out)."""
    remaining = sorted(order)
    code = []
    for item in order[:-1]:
        code.append(remaining.index(item))
        remaining.remove(item)
    return code


@functools.lru_cache(maxsize=None)
def parent_pairs(candidates: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The parent pairs a block may choose among its candidate nodes, in index order."""
    return tuple(itertools.combinations(candidates, 2))


def shifts_for(space, base: int) -> tuple[int, ...]:
    """The level each shift index gives a block of this base level."""
    lo, hi = space.level_bounds
    if space.bound_mode == "clamp":
        return tuple(min(max(base + o, lo), hi) for o in space.level_offsets)
    inside = [base + o for o in space.level_offsets if lo <= base + o <= hi]
    return tuple(inside[k % len(inside)] for k in range(len(space.level_offsets)))


def candidates(space, block: int) -> tuple[int, ...]:
    """Nodes block ``block`` (1-based) may read."""
    node = space.num_init_blocks + block - 1
    if block <= space.num_intermediate:
        return tuple(range(max(0, node - space.parent_window), node))
    return tuple(range(node))


def parameter_ranges(space) -> dict[str, tuple[int, int]]:
    """Every parameter's inclusive ``(low, high)``; a choice of one option has no parameter."""
    ranges: dict[str, tuple[int, int]] = {}
    for k in range(space.num_intermediate - 1):
        ranges[f"order_{k}"] = (0, space.num_intermediate - 1 - k)
    for k in range(len(space.output_levels) - 1):
        ranges[f"output_order_{k}"] = (0, len(space.output_levels) - 1 - k)
    if len(space.level_offsets) > 1:
        for b in range(1, space.num_intermediate + 1):
            ranges[f"level_shift_{b}"] = (0, len(space.level_offsets) - 1)
    for b in range(1, space.num_blocks + 1):
        if len(space.block_fns) > 1:
            ranges[f"block_fn_{b}"] = (0, len(space.block_fns) - 1)
        for option, values in space.block_options.items():
            if len(values) > 1:
                ranges[f"{option}_{b}"] = (0, len(values) - 1)
        pairs = len(parent_pairs(candidates(space, b)))
        if pairs > 1:
            ranges[f"parents_{b}"] = (0, pairs - 1)
    return ranges


def genome_from_params(space, params: Mapping[str, int]) -> Genome:
    """The genome a full parameter assignment of ``space`` describes."""
    for name, (low, high) in space.parameters.items():
        value = params.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SpaceError(f"parameter {name} must be an integer in [{low}, {high}], got {value!r}")
    n = space.num_intermediate
    slots = lehmer_decode([params[f"order_{k}"] for k in range(n - 1)], n)
    outputs = lehmer_decode([params[f"output_order_{k}"] for k in range(len(space.output_levels) - 1)],
                            len(space.output_levels))
    blocks = []
    for b in range(1, space.num_blocks + 1):
        if b <= n:
            base = space.intermediate_levels[slots[b - 1]]
            level = space.shift_choices[base][params.get(f"level_shift_{b}", 0)]
            is_output = False
        else:
            level = space.output_levels[outputs[b - n - 1]]
            is_output = True
        fn = _variant(space, space.block_fns[params.get(f"block_fn_{b}", 0)], b, params)
        parents = parent_pairs(candidates(space, b))[params.get(f"parents_{b}", 0)]
        blocks.append(BlockSpec(level, fn, parents, is_output))
    return Genome(tuple(blocks), space.min_level, space.max_level, space.num_init_blocks, space.init_block_fn,
                  space.family)


def _variant(space, fn: str, block: int, params: Mapping[str, int]) -> str:
    """The registered block fn that is ``fn`` with block ``block``'s searched options."""
    if not space.block_options:
        return fn
    chosen = {option: values[params.get(f"{option}_{block}", 0)] for option, values in space.block_options.items()}
    return find_block_variant(fn, **chosen)


def encode_genome(space, genome: Genome) -> dict[str, int]:
    """Parameters of ``space`` that :func:`genome_from_params` maps back to ``genome`` (see ``space.encode``)."""
    where = "genome outside the space"
    if (genome.min_level, genome.max_level) != (space.min_level, space.max_level):
        raise SpaceError(f"{where}: levels {genome.min_level}..{genome.max_level}, space has "
                         f"{space.min_level}..{space.max_level}")
    if genome.family != space.family:
        raise SpaceError(f"{where}: family {genome.family!r}, space has {space.family!r}")
    if (genome.num_init_blocks, genome.init_block_fn) != (space.num_init_blocks, space.init_block_fn):
        raise SpaceError(f"{where}: stem differs from the space's "
                         f"({space.num_init_blocks} x {space.init_block_fn})")
    if len(genome.blocks) != space.num_blocks:
        raise SpaceError(f"{where}: {len(genome.blocks)} blocks, space has {space.num_blocks}")
    n = space.num_intermediate
    params: dict[str, int] = {}
    for b, block in enumerate(genome.blocks, start=1):
        if block.is_output != (b > n):
            kind = "an output" if b > n else "an intermediate"
            raise SpaceError(f"{where}: block {b} must be {kind} block (intermediate blocks come first)")
        fn, options = block.block_fn, {}
        if space.block_options:
            spec = BLOCK_FNS[block.block_fn]
            fn, options = spec.base or spec.name, dict(spec.options)
        if fn not in space.block_fns:
            raise SpaceError(f"{where}: block {b} uses {block.block_fn!r}, space offers {list(space.block_fns)}")
        if len(space.block_fns) > 1:
            params[f"block_fn_{b}"] = space.block_fns.index(fn)
        for option, values in space.block_options.items():
            if options.get(option) not in values:
                raise SpaceError(f"{where}: block {b} ({block.block_fn}) has {option} "
                                 f"{options.get(option)!r}, space offers {list(values)}")
            if len(values) > 1:
                params[f"{option}_{b}"] = values.index(options[option])
        pair = tuple(sorted(block.input_offsets))
        pairs = parent_pairs(candidates(space, b))
        if pair not in pairs:
            raise SpaceError(f"{where}: block {b} reads nodes {list(pair)}, outside its candidates "
                             f"{list(candidates(space, b))}")
        if len(pairs) > 1:
            params[f"parents_{b}"] = pairs.index(pair)
    out_order = [space.output_levels.index(block.level) for block in genome.blocks[n:]]
    for k, digit in enumerate(lehmer_encode(out_order)):
        params[f"output_order_{k}"] = digit
    slots, shifts = match_levels(space, [block.level for block in genome.blocks[:n]])
    for k, digit in enumerate(lehmer_encode(slots)):
        params[f"order_{k}"] = digit
    if len(space.level_offsets) > 1:
        for b, shift in enumerate(shifts, start=1):
            params[f"level_shift_{b}"] = shift
    return {name: params[name] for name in space.parameters}


def match_levels(space, levels: Sequence[int]) -> tuple[list[int], list[int]]:
    """Assign a base-level slot and shift index to each intermediate level (bipartite matching)."""

    def options(position):
        # (slot, shift index), preferring the smallest shift, then the lowest slot.
        found = []
        for slot, base in enumerate(space.intermediate_levels):
            for shift, level in enumerate(space.shift_choices[base]):
                if level == levels[position]:
                    found.append((abs(space.level_offsets[shift]), slot, shift))
                    break
        return [(slot, shift) for _, slot, shift in sorted(found)]

    choices = [options(p) for p in range(len(levels))]
    owner: dict[int, int] = {}  # slot -> position
    choice: dict[int, tuple[int, int]] = {}

    def assign(position, seen):
        for slot, shift in choices[position]:
            if slot in seen:
                continue
            seen.add(slot)
            if slot not in owner or assign(owner[slot], seen):
                owner[slot] = position
                choice[position] = (slot, shift)
                return True
        return False

    for position in range(len(levels)):
        if not assign(position, set()):
            raise SpaceError(
                f"genome outside the space: intermediate levels {list(levels)} cannot be made from base "
                f"levels {list(space.intermediate_levels)} with offsets {list(space.level_offsets)}"
            )
    return [choice[p][0] for p in range(len(levels))], [choice[p][1] for p in range(len(levels))]
