"""The scale-permuted search space: fixed-range integer parameters <-> genomes.

Every architecture choice is one integer parameter whose name and range never
change, so any Optuna sampler (TPE, random, NSGA-II, GP, CMA-ES) can drive it:

* ``order_{k}``: the Lehmer code of the order of the intermediate blocks' base
  levels (digit k ranges over ``0 .. n - 1 - k``);
* ``output_order_{k}``: the Lehmer code of the order of the output levels;
* ``level_shift_{b}``: index into ``level_offsets`` for intermediate block b;
* ``block_fn_{b}``: index into ``block_fns`` for block b;
* ``parents_{b}``: index of block b's parent pair among the pairs of its
  candidate nodes (the last ``parent_window`` nodes for intermediate blocks,
  every earlier node for output blocks);
* ``{option}_{b}``: index into ``block_options[option]`` for block b (e.g.
  ``kernel_size_3``); the block fn a genome records is the registered variant
  with those options (``mbconv_k5_e3``), so genomes stay plain data.

Example:
    >>> import optuna
    >>> from search_spaces.space import ScalePermutedSpace
    >>> from spinenet import SPINENET_49
    >>> space = ScalePermutedSpace()
    >>> space.contains(SPINENET_49)
    True
    >>> space.from_params(space.encode(SPINENET_49)) == SPINENET_49
    True
    >>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    >>> study.enqueue_trial(space.encode(SPINENET_49))
    >>> study.optimize(lambda t: len(space.sample(t).blocks), n_trials=2)
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import random
from typing import Callable, Iterable, Mapping, Sequence

import optuna

from search_spaces.block_fns import BLOCK_FNS, find_block_variant
from search_spaces.families import DEFAULT_FAMILY, FamilyError, get_family
from search_spaces.genome import BlockSpec, Genome

# ResNet-50's blocks less the two stem blocks, the three outputs it already
# has at levels 3-5, and one level-4 block: SpineNet-49's ten intermediate blocks.
DEFAULT_INTERMEDIATE_LEVELS = (2, 3, 3, 3, 4, 4, 4, 4, 5, 5)

Constraint = Callable[[Genome], Sequence[float]]


class SpaceError(ValueError):
    """A search-space configuration that cannot work, or a genome outside the space."""


class InfeasibleGenome(optuna.TrialPruned):
    """Raised by :meth:`ScalePermutedSpace.sample` when a genome breaks the constraint.

    Optuna records it as a pruned trial, so no model is built.
    """


def _lehmer_decode(code: Sequence[int], n: int) -> list[int]:
    remaining = list(range(n))
    order = [remaining.pop(digit) for digit in code]
    return order + remaining


def _lehmer_encode(order: Sequence[int]) -> list[int]:
    remaining = sorted(order)
    code = []
    for item in order[:-1]:
        code.append(remaining.index(item))
        remaining.remove(item)
    return code


@functools.lru_cache(maxsize=None)
def _pairs(candidates: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    return tuple(itertools.combinations(candidates, 2))


class ScalePermutedSpace:
    """Scale-permuted DAGs over a stem: permuted intermediate and output blocks, two parents each.

    The defaults are the SpineNet paper's space: ten intermediate blocks with
    base levels ``DEFAULT_INTERMEDIATE_LEVELS`` in any order, each shifted by
    -1, 0, +1 or +2 levels; five output blocks at levels 3..7 in any order;
    bottleneck or residual per block; intermediate parents from the last five
    nodes, output parents from any earlier node.

    Args:
        min_level, max_level: endpoint levels; one output block per level.
        num_init_blocks, init_block_fn: the stem.
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
        self._shift_choices = {base: self._shifts_for(base) for base in set(self.intermediate_levels)}
        self.parameters = self._parameter_ranges()

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
            if any(f"{option}_".startswith(p) or p.startswith(f"{option}_") for p in _EDIT_PREFIX.values()):
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

    def _shifts_for(self, base: int) -> tuple[int, ...]:
        """The level each shift index gives a block of this base level."""
        lo, hi = self.level_bounds
        if self.bound_mode == "clamp":
            return tuple(min(max(base + o, lo), hi) for o in self.level_offsets)
        inside = [base + o for o in self.level_offsets if lo <= base + o <= hi]
        return tuple(inside[k % len(inside)] for k in range(len(self.level_offsets)))

    def _candidates(self, block: int) -> tuple[int, ...]:
        """Nodes block ``block`` (1-based) may read."""
        node = self.num_init_blocks + block - 1
        if block <= self.num_intermediate:
            return tuple(range(max(0, node - self.parent_window), node))
        return tuple(range(node))

    def _parameter_ranges(self) -> dict[str, tuple[int, int]]:
        ranges: dict[str, tuple[int, int]] = {}
        for k in range(self.num_intermediate - 1):
            ranges[f"order_{k}"] = (0, self.num_intermediate - 1 - k)
        for k in range(len(self.output_levels) - 1):
            ranges[f"output_order_{k}"] = (0, len(self.output_levels) - 1 - k)
        if len(self.level_offsets) > 1:
            for b in range(1, self.num_intermediate + 1):
                ranges[f"level_shift_{b}"] = (0, len(self.level_offsets) - 1)
        for b in range(1, self.num_blocks + 1):
            if len(self.block_fns) > 1:
                ranges[f"block_fn_{b}"] = (0, len(self.block_fns) - 1)
            for option, values in self.block_options.items():
                if len(values) > 1:
                    ranges[f"{option}_{b}"] = (0, len(values) - 1)
            pairs = len(_pairs(self._candidates(b)))
            if pairs > 1:
                ranges[f"parents_{b}"] = (0, pairs - 1)
        return ranges

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
        for name, (low, high) in self.parameters.items():
            value = params.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SpaceError(f"parameter {name} must be an integer in [{low}, {high}], got {value!r}")
        n = self.num_intermediate
        slots = _lehmer_decode([params[f"order_{k}"] for k in range(n - 1)], n)
        outputs = _lehmer_decode([params[f"output_order_{k}"] for k in range(len(self.output_levels) - 1)],
                                 len(self.output_levels))
        blocks = []
        for b in range(1, self.num_blocks + 1):
            if b <= n:
                base = self.intermediate_levels[slots[b - 1]]
                level = self._shift_choices[base][params.get(f"level_shift_{b}", 0)]
                is_output = False
            else:
                level = self.output_levels[outputs[b - n - 1]]
                is_output = True
            fn = self._variant(self.block_fns[params.get(f"block_fn_{b}", 0)], b, params)
            parents = _pairs(self._candidates(b))[params.get(f"parents_{b}", 0)]
            blocks.append(BlockSpec(level, fn, parents, is_output))
        return Genome(tuple(blocks), self.min_level, self.max_level, self.num_init_blocks, self.init_block_fn,
                      self.family)

    def _variant(self, fn: str, block: int, params: Mapping[str, int]) -> str:
        """The registered block fn that is ``fn`` with block ``block``'s searched options."""
        if not self.block_options:
            return fn
        chosen = {option: values[params.get(f"{option}_{block}", 0)] for option, values in self.block_options.items()}
        return find_block_variant(fn, **chosen)

    def encode(self, genome: Genome) -> dict[str, int]:
        """Parameters that :meth:`from_params` (and so :meth:`sample`) maps back to ``genome``.

        Parent pairs are stored in ascending order, so a genome that lists a
        parent pair in the other order maps back to an equal-fingerprint twin.
        Raises :class:`SpaceError` naming the first thing outside the space.
        """
        where = "genome outside the space"
        if (genome.min_level, genome.max_level) != (self.min_level, self.max_level):
            raise SpaceError(f"{where}: levels {genome.min_level}..{genome.max_level}, space has "
                             f"{self.min_level}..{self.max_level}")
        if genome.family != self.family:
            raise SpaceError(f"{where}: family {genome.family!r}, space has {self.family!r}")
        if (genome.num_init_blocks, genome.init_block_fn) != (self.num_init_blocks, self.init_block_fn):
            raise SpaceError(f"{where}: stem differs from the space's "
                             f"({self.num_init_blocks} x {self.init_block_fn})")
        if len(genome.blocks) != self.num_blocks:
            raise SpaceError(f"{where}: {len(genome.blocks)} blocks, space has {self.num_blocks}")
        n = self.num_intermediate
        params: dict[str, int] = {}
        for b, block in enumerate(genome.blocks, start=1):
            if block.is_output != (b > n):
                kind = "an output" if b > n else "an intermediate"
                raise SpaceError(f"{where}: block {b} must be {kind} block (intermediate blocks come first)")
            fn, options = block.block_fn, {}
            if self.block_options:
                spec = BLOCK_FNS[block.block_fn]
                fn, options = spec.base or spec.name, dict(spec.options)
            if fn not in self.block_fns:
                raise SpaceError(f"{where}: block {b} uses {block.block_fn!r}, space offers {list(self.block_fns)}")
            if len(self.block_fns) > 1:
                params[f"block_fn_{b}"] = self.block_fns.index(fn)
            for option, values in self.block_options.items():
                if options.get(option) not in values:
                    raise SpaceError(f"{where}: block {b} ({block.block_fn}) has {option} "
                                     f"{options.get(option)!r}, space offers {list(values)}")
                if len(values) > 1:
                    params[f"{option}_{b}"] = values.index(options[option])
            pair = tuple(sorted(block.input_offsets))
            pairs = _pairs(self._candidates(b))
            if pair not in pairs:
                raise SpaceError(f"{where}: block {b} reads nodes {list(pair)}, outside its candidates "
                                 f"{list(self._candidates(b))}")
            if len(pairs) > 1:
                params[f"parents_{b}"] = pairs.index(pair)
        out_order = [self.output_levels.index(block.level) for block in genome.blocks[n:]]
        for k, digit in enumerate(_lehmer_encode(out_order)):
            params[f"output_order_{k}"] = digit
        slots, shifts = self._match_levels([block.level for block in genome.blocks[:n]])
        for k, digit in enumerate(_lehmer_encode(slots)):
            params[f"order_{k}"] = digit
        if len(self.level_offsets) > 1:
            for b, shift in enumerate(shifts, start=1):
                params[f"level_shift_{b}"] = shift
        return {name: params[name] for name in self.parameters}

    def _match_levels(self, levels: Sequence[int]) -> tuple[list[int], list[int]]:
        """Assign a base-level slot and shift index to each intermediate level (bipartite matching)."""

        def options(position):
            # (slot, shift index), preferring the smallest shift, then the lowest slot.
            found = []
            for slot, base in enumerate(self.intermediate_levels):
                for shift, level in enumerate(self._shift_choices[base]):
                    if level == levels[position]:
                        found.append((abs(self.level_offsets[shift]), slot, shift))
                        break
            return [(slot, shift) for _, slot, shift in sorted(found)]

        candidates = [options(p) for p in range(len(levels))]
        owner: dict[int, int] = {}  # slot -> position
        choice: dict[int, tuple[int, int]] = {}

        def assign(position, seen):
            for slot, shift in candidates[position]:
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
                    f"levels {list(self.intermediate_levels)} with offsets {list(self.level_offsets)}"
                )
        return [choice[p][0] for p in range(len(levels))], [choice[p][1] for p in range(len(levels))]

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
        with Optuna's ``Trial.set_constraint`` (which constraint-aware samplers
        read) and as the ``constraints`` user attribute, and an infeasible genome is marked
        ``infeasible`` and raises :class:`InfeasibleGenome`: the trial ends
        PRUNED before anything is trained.
        """
        params = {name: trial.suggest_int(name, low, high) for name, (low, high) in self.parameters.items()}
        genome = self.from_params(params)
        if constraint is not None:
            values = [float(v) for v in constraint(genome)]
            trial.set_user_attr("constraints", values)
            for i, value in enumerate(values):
                trial.set_constraint(f"constraint{i}", value)
            if any(v > 0 for v in values):
                trial.set_user_attr("infeasible", True)
                raise InfeasibleGenome(f"genome {genome.fingerprint} breaks the constraint: {values}")
        return genome

    def random_params(self, rng: random.Random) -> dict[str, int]:
        """A uniformly random parameter assignment."""
        return {name: rng.randint(low, high) for name, (low, high) in self.parameters.items()}

    def random_genome(self, rng: random.Random, constraint: Constraint | None = None,
                      max_tries: int = 1000) -> Genome:
        """A random genome of the space (feasible under ``constraint`` if one is given)."""
        for _ in range(max_tries):
            genome = self.from_params(self.random_params(rng))
            if constraint is None or all(v <= 0 for v in constraint(genome)):
                return genome
        raise SpaceError(f"no feasible genome found in {max_tries} random samples; loosen the constraint")

    # ------------------------------------------------------------- counting
    def size(self) -> int:
        """The exact number of parameter assignments.

        Several assignments can give one genome (equal base levels swapped, or
        two (base, shift) pairs reaching one level); :meth:`num_genomes` counts
        distinct genomes. Distinct *networks* are fewer again, since blocks no
        endpoint reads are not built.
        """
        return math.prod(high - low + 1 for low, high in self.parameters.values())

    def num_genomes(self) -> int:
        """The exact number of distinct genomes the space holds."""
        other = math.prod(
            high - low + 1 for name, (low, high) in self.parameters.items()
            if not name.startswith(("order_", "level_shift_"))
        )
        return other * self._num_level_sequences()

    def _num_level_sequences(self) -> int:
        # Whether a level multiset can be built from the base levels depends only
        # on the multiset, so count reachable multisets times their arrangements.
        reachable = sorted({lvl for base in self.intermediate_levels for lvl in self._shift_choices[base]})
        n = self.num_intermediate
        total = 0
        for combo in itertools.combinations_with_replacement(reachable, n):
            try:
                self._match_levels(combo)
            except SpaceError:
                continue
            counts = collections.Counter(combo).values()
            total += math.factorial(n) // math.prod(math.factorial(c) for c in counts)
        return total

    # ------------------------------------------------------------- variation
    def mutate(self, genome: Genome, rng: random.Random, max_tries: int = 20) -> Genome:
        """One random edit that changes the network, staying inside the space.

        The edit is one of: swap two intermediate blocks in the order, swap two
        output levels, re-pick one block's parents, re-pick one level shift,
        change one block fn, change one searched block option.
        """
        params = self.encode(genome)
        for _ in range(max_tries):
            child = self.from_params(self.mutate_params(params, rng))
            if child.fingerprint != genome.fingerprint:
                return child
        return child

    def mutate_params(self, params: Mapping[str, int], rng: random.Random) -> dict[str, int]:
        """:meth:`mutate` on the parameter encoding."""
        params = dict(params)
        edits = ["swap_intermediate", "swap_output", "parents", "level_shift", "block_fn"]
        available = [e for e in edits if any(name.startswith(_EDIT_PREFIX[e]) for name in self.parameters)]
        option_names = [n for n in self.parameters if n.rsplit("_", 1)[0] in self.block_options]
        edit = rng.choice(available + (["block_option"] if option_names else []))
        if edit == "block_option":
            name = rng.choice(option_names)
            low, high = self.parameters[name]
            params[name] = rng.choice([v for v in range(low, high + 1) if v != params[name]])
            return params
        if edit in ("swap_intermediate", "swap_output"):
            prefix = _EDIT_PREFIX[edit]
            digits = sorted((n for n in self.parameters if n.startswith(prefix)), key=lambda n: int(n.rsplit("_", 1)[1]))
            order = _lehmer_decode([params[n] for n in digits], len(digits) + 1)
            i, j = rng.sample(range(len(order)), 2)
            order[i], order[j] = order[j], order[i]
            if edit == "swap_intermediate" and f"level_shift_{i + 1}" in params:
                # Move each block's shift with it, so the two blocks trade places.
                a, b = f"level_shift_{i + 1}", f"level_shift_{j + 1}"
                params[a], params[b] = params[b], params[a]
            params.update(zip(digits, _lehmer_encode(order)))
        else:
            name = rng.choice([n for n in self.parameters if n.startswith(_EDIT_PREFIX[edit])])
            low, high = self.parameters[name]
            params[name] = rng.choice([v for v in range(low, high + 1) if v != params[name]])
        return params

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> Genome:
        """Uniform crossover of two genomes' parameters (always a valid genome of the space)."""
        pa, pb = self.encode(a), self.encode(b)
        return self.from_params({name: (pa if rng.random() < 0.5 else pb)[name] for name in self.parameters})


_EDIT_PREFIX = {
    "swap_intermediate": "order_",
    "swap_output": "output_order_",
    "parents": "parents_",
    "level_shift": "level_shift_",
    "block_fn": "block_fn_",
}
