"""How big a space is: parameter assignments, and the distinct genomes they give."""

from __future__ import annotations

import collections
import itertools
import math

from search_spaces.space.encoding import match_levels
from search_spaces.space.errors import SpaceError


def count_assignments(space) -> int:
    """The exact number of parameter assignments of ``space`` (see ``space.size``)."""
    return math.prod(high - low + 1 for low, high in space.parameters.values())


def count_genomes(space) -> int:
    """The exact number of distinct genomes ``space`` holds."""
    other = math.prod(
        high - low + 1 for name, (low, high) in space.parameters.items()
        if not name.startswith(("order_", "level_shift_"))
    )
    return other * _count_level_sequences(space)


def _count_level_sequences(space) -> int:
    # Whether a level multiset can be built from the base levels depends only
    # on the multiset, so count reachable multisets times their arrangements.
    reachable = sorted({lvl for base in space.intermediate_levels for lvl in space.shift_choices[base]})
    n = space.num_intermediate
    total = 0
    for combo in itertools.combinations_with_replacement(reachable, n):
        try:
            match_levels(space, combo)
        except SpaceError:
            continue
        counts = collections.Counter(combo).values()
        total += math.factorial(n) // math.prod(math.factorial(c) for c in counts)
    return total
