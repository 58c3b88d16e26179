"""The :class:`ScalePermutedSpace`: its settings, checked when it is built, and its operations.

Each operation is a function of its own module, which the methods call:
:mod:`~search_spaces.space.encoding` (parameters <-> genomes),
:mod:`~search_spaces.space.sampling`, :mod:`~search_spaces.space.counting`
and :mod:`~search_spaces.space.mutation`.
"""

from __future__ import annotations

import itertools
import random
from typing import Iterable, Mapping, Sequence

from search_spaces.block_fns import BLOCK_FNS, find_block_variant
from search_spaces.families import DEFAULT_FAMILY, FamilyError, get_family
from search_spaces.genome import Genome
from search_spaces.space import counting, encoding, mutation, sampling
from search_spaces.space.encoding import PARAMETER_PREFIXES, parameter_ranges, shifts_for
from search_spaces.space.errors import SpaceError
from search_spaces.space.sampling import Constraint

# ResNet-50's blocks less the two stem blocks, the three outputs it already
# has at levels 3-5, and one level-4 block: SpineNet-49's ten intermediate blocks.
DEFAULT_INTERMEDIATE_LEVELS = (2, 3, 3, 3, 4, 4, 4, 4, 5, 5)


class ScalePermutedSpace:
    """Scale-permuted DAGs over a stem: permuted intermediate and output blocks, two parents each.

    The defaults are the SpineNet paper's space: ten intermediate blocks with
    base levels ``DEFAULT_INTERMEDIATE_LEVELS`` in any order, each shifted by
    -1, 0, +1 or +2 levels; five output blocks at levels 3..7 in any order;
    bottleneck or residual per block; intermediate parents from the last five
    nodes, output parents from any earlier node.

    Args:
        min_level: the lowest endpoint level; one output block per level.
        max_level: the highest endpoint level.
        num_init_blocks: the stem's block count.
        init_block_fn: the stem's block function.
        intermediate_levels: the multiset of intermediate base levels.
        level_offsets: the level shifts an intermediate block may take.
        block_fns: the block functions each block chooses from.
        parent_window: how many of the latest nodes an intermediate block may read.
        level_bounds: the lowest and highest level a shifted block may take
            (default: the family's block levels).
        bound_mode: ``"clamp"`` (shifted levels are clamped into the bounds) or
            ``"restrict"`` (shifts that leave the bounds are not offered; the
            shift index wraps over those that stay inside).
        family: the block family (:mod:`search_spaces.families`) of the genomes.
        block_options: options searched per block, ``{name: values}``; every
            block fn with every combination must be a registered variant
            (see :func:`search_spaces.block_fns.register_block_variant`).
    """

    def __init__(
        self,
        *,
        min_level: int = 3,
        max_level: int = 7,
        num_init_blocks: int = 2,
        init_block_fn: str | None = None,
        intermediate_levels: Iterable[int] | Mapping[int, int] = DEFAULT_INTERMEDIATE_LEVELS,
        level_offsets: Sequence[int] = (-1, 0, 1, 2),
        block_fns: Sequence[str] = ("bottleneck", "residual"),
        parent_window: int = 5,
        level_bounds: Sequence[int] | None = None,
        bound_mode: str = "clamp",
        family: str = DEFAULT_FAMILY,
        block_options: Mapping[str, Sequence] | None = None,
    ):
        if isinstance(intermediate_levels, Mapping):
            intermediate_levels = [lvl for lvl, count in sorted(intermediate_levels.items()) for _ in range(count)]
        try:
            family_spec = get_family(family)
        except FamilyError as err:
            raise SpaceError(f"invalid search space: {err}") from None
        self.family = family
        self.block_levels = (family_spec.min_block_level, family_spec.max_block_level)
        self.min_level = min_level
        self.max_level = max_level
        self.num_init_blocks = num_init_blocks
        self.init_block_fn = init_block_fn if init_block_fn is not None else family_spec.stem_block_fn
        self.block_options = {str(k): tuple(v) for k, v in (block_options or {}).items()}
        self.intermediate_levels = tuple(sorted(intermediate_levels))
        self.level_offsets = tuple(level_offsets)
        self.block_fns = tuple(block_fns)
        self.parent_window = parent_window
        self.level_bounds = tuple(level_bounds) if level_bounds is not None else self.block_levels
        self.bound_mode = bound_mode
        self._check_config()
        self.output_levels = tuple(range(min_level, max_level + 1))
        self.num_intermediate = len(self.intermediate_levels)
        self.num_blocks = self.num_intermediate + len(self.output_levels)
        # The level each shift index gives, per base level.
        self.shift_choices = {base: shifts_for(self, base) for base in set(self.intermediate_levels)}
        self.parameters = parameter_ranges(self)

    # ---------------------------------------------------------------- config
    def _check_config(self) -> None:
        levels = self.block_levels

        def fail(message):
            raise SpaceError(f"invalid search space: {message}")

        for name in ("min_level", "max_level", "num_init_blocks", "parent_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                fail(f"{name} must be an integer, got {value!r}")
        if not levels[0] <= self.min_level <= self.max_level <= levels[1]:
            fail(f"need {levels[0]} <= min_level <= max_level <= {levels[1]}, got {self.min_level}, {self.max_level}")
        if self.num_init_blocks < 2:
            fail(f"num_init_blocks must be at least 2, got {self.num_init_blocks}")
        if self.parent_window < 2:
            fail(f"parent_window must be at least 2 (two distinct parents), got {self.parent_window}")
        for level in self.intermediate_levels:
            if not (isinstance(level, int) and levels[0] <= level <= levels[1]):
                fail(f"intermediate level {level!r} is outside the filter map ({levels[0]}..{levels[1]})")
        if not self.level_offsets or len(set(self.level_offsets)) != len(self.level_offsets):
            fail(f"level_offsets must be distinct integers, got {list(self.level_offsets)}")
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in self.level_offsets):
            fail(f"level_offsets must be integers, got {list(self.level_offsets)}")
        if not self.block_fns or len(set(self.block_fns)) != len(self.block_fns):
            fail(f"block_fns must be distinct names, got {list(self.block_fns)}")
        for fn in (*self.block_fns, self.init_block_fn):
            if fn not in BLOCK_FNS:
                fail(f"unknown block fn {fn!r}; registered: {', '.join(sorted(BLOCK_FNS))}")
            if BLOCK_FNS[fn].family != self.family:
                fail(f"block fn {fn!r} belongs to the {BLOCK_FNS[fn].family} family, not {self.family}")
        for option, values in self.block_options.items():
            if not option.isidentifier() or not values or len(set(values)) != len(values):
                fail(f"block_options: {option!r} needs distinct values, got {list(values)}")
            if any(f"{option}_".startswith(p) or p.startswith(f"{option}_") for p in PARAMETER_PREFIXES.values()):
                fail(f"block_options: {option!r} clashes with the space's own parameter names")
        for fn in self.block_fns:
            for combo in itertools.product(*self.block_options.values()):
                try:
                    find_block_variant(fn, **dict(zip(self.block_options, combo)))
                except (KeyError, TypeError) as err:
                    fail(f"block_options: {err.args[0] if err.args else err}")
        lo, hi = self.level_bounds if len(self.level_bounds) == 2 else (None, None)
        if lo is None or not levels[0] <= lo <= hi <= levels[1]:
            fail(f"level_bounds must be [low, high] within {levels[0]}..{levels[1]}, got {list(self.level_bounds)}")
        if self.bound_mode not in ("clamp", "restrict"):
            fail(f"bound_mode must be 'clamp' or 'restrict', got {self.bound_mode!r}")
        if self.bound_mode == "restrict":
            for base in self.intermediate_levels:
                if not any(lo <= base + o <= hi for o in self.level_offsets):
                    fail(f"no level offset keeps base level {base} inside level_bounds {list(self.level_bounds)}")

    def to_dict(self) -> dict:
        """The settings this space was built with (what an experiment file holds)."""
        return {
            "min_level": self.min_level,
            "max_level": self.max_level,
            "num_init_blocks": self.num_init_blocks,
            "init_block_fn": self.init_block_fn,
            "intermediate_levels": list(self.intermediate_levels),
            "level_offsets": list(self.level_offsets),
            "block_fns": list(self.block_fns),
            "parent_window": self.parent_window,
            "level_bounds": list(self.level_bounds),
            "bound_mode": self.bound_mode,
            "family": self.family,
            "block_options": {k: list(v) for k, v in self.block_options.items()},
        }

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"ScalePermutedSpace({settings})"

    # --------------------------------------------------------------- mapping
    def from_params(self, params: Mapping[str, int]) -> Genome:
        """The genome a full parameter assignment describes."""
        return encoding.genome_from_params(self, params)

    def encode(self, genome: Genome) -> dict[str, int]:
        """Parameters that :meth:`from_params` (and so :meth:`sample`) maps back to ``genome``.

        Parent pairs are stored in ascending order, so a genome that lists a
        parent pair in the other order maps back to an equal-fingerprint twin.
        Raises :class:`SpaceError` naming the first thing outside the space.
        """
        return encoding.encode_genome(self, genome)

    def contains(self, genome: Genome) -> bool:
        """Whether the space holds ``genome``'s architecture."""
        try:
            return self.from_params(self.encode(genome)).fingerprint == genome.fingerprint
        except SpaceError:
            return False

    # -------------------------------------------------------------- sampling
    def sample(self, trial, constraint: Constraint | None = None) -> Genome:
        """Suggest every parameter on an Optuna trial and return the genome.

        With ``constraint`` (a genome -> list of floats, feasible when all are
        <= 0, e.g. :class:`spinenet.cost.CostBudget`) the values are stored
        with Optuna's ``Trial.set_constraint`` and as the ``constraints`` user
        attribute, and an infeasible genome is marked ``infeasible`` and raises
        :class:`~search_spaces.space.errors.InfeasibleGenome`: the trial ends
        PRUNED before anything is trained. (TPE learns from those PRUNED
        trials and proposes fewer such genomes; NSGA-II and GP fit complete
        trials only and do not see them.)
        """
        return sampling.sample_genome(self, trial, constraint)

    def random_params(self, rng: random.Random) -> dict[str, int]:
        """A uniformly random parameter assignment."""
        return sampling.random_params(self, rng)

    def random_genome(self, rng: random.Random, constraint: Constraint | None = None,
                      max_tries: int = 1000) -> Genome:
        """A random genome of the space (feasible under ``constraint`` if one is given)."""
        return sampling.random_genome(self, rng, constraint, max_tries)

    # ------------------------------------------------------------- counting
    def size(self) -> int:
        """The exact number of parameter assignments.

        Several assignments can give one genome (equal base levels swapped, or
        two (base, shift) pairs reaching one level); :meth:`num_genomes` counts
        distinct genomes. Distinct *networks* are fewer again, since blocks no
        endpoint reads are not built.
        """
        return counting.count_assignments(self)

    def num_genomes(self) -> int:
        """The exact number of distinct genomes the space holds."""
        return counting.count_genomes(self)

    # ------------------------------------------------------------- variation
    def mutate(self, genome: Genome, rng: random.Random, max_tries: int = 20) -> Genome:
        """One random edit that changes the network, staying inside the space.

        The edit is one of: swap two intermediate blocks in the order, swap two
        output levels, re-pick one block's parents, re-pick one level shift,
        change one block fn, change one searched block option.
        """
        return mutation.mutate_genome(self, genome, rng, max_tries)

    def mutate_params(self, params: Mapping[str, int], rng: random.Random) -> dict[str, int]:
        """:meth:`mutate` on the parameter encoding."""
        return mutation.mutate_params(self, params, rng)

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> Genome:
        """Uniform crossover of two genomes' parameters (always a valid genome of the space)."""
        return mutation.crossover(self, a, b, rng)
