"""Genomes: scale-permuted architectures as plain, validated data.

A genome is a stem (``num_init_blocks`` level-2 blocks, nodes ``0 .. n-1``)
followed by a list of blocks. Block ``i`` (counted from 1, as in the SpineNet
paper and the decoder's layer names ``block{i}_...``) becomes node
``num_init_blocks + i - 1``; its two ``input_offsets`` index earlier nodes.

Nothing here imports TensorFlow or Optuna.

Examples:
    >>> from search_spaces.genome import Genome
    >>> g = Genome.from_block_specs([
    ...     (3, "bottleneck", (0, 1), True), (4, "residual", (1, 2), True),
    ...     (5, "residual", (2, 3), True), (6, "residual", (3, 4), True),
    ...     (7, "residual", (4, 5), True)])
    >>> Genome.from_yaml(g.to_yaml()) == g
    True
    >>> len(g.fingerprint)
    16
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Sequence

from nas.config import read_text
from search_spaces.block_spec import BlockSpec
from search_spaces.families import DEFAULT_FAMILY, FamilyError, get_family
from search_spaces.fingerprint import genome_fingerprint
from search_spaces.genome_format import genome_fields, genome_to_dict, genome_to_yaml, parse_genome_text
from search_spaces.genome_rules import GenomeError, check_genome
from search_spaces.graph import ResolvedGraph, resolve_graph

# The SpineNet family's filter map, kept for existing imports; each genome's
# family (search_spaces.families) owns its own map.
FILTER_SIZE_MAP = get_family(DEFAULT_FAMILY).filter_size_map
STEM_LEVEL = 2


@dataclasses.dataclass(frozen=True)
class Genome:
    """A scale-permuted architecture: stem settings, blocks, the endpoint level range and its block family.

    Construction validates the genome (:mod:`search_spaces.genome_rules`) and
    raises :class:`~search_spaces.genome_rules.GenomeError` naming the first
    rule broken. Instances are immutable and hashable.
    ``init_block_fn`` defaults to the family's stem block function.
    """

    blocks: tuple[BlockSpec, ...]
    min_level: int = 3
    max_level: int = 7
    num_init_blocks: int = 2
    init_block_fn: str | None = None
    family: str = DEFAULT_FAMILY

    def __post_init__(self):
        try:
            family = get_family(self.family)
        except FamilyError as err:
            raise GenomeError(str(err)) from None
        if self.init_block_fn is None:
            object.__setattr__(self, "init_block_fn", family.stem_block_fn)
        blocks = tuple(
            b if isinstance(b, BlockSpec) and isinstance(b.input_offsets, tuple)
            else BlockSpec(*(b.to_tuple() if isinstance(b, BlockSpec) else b))
            for b in self.blocks
        )
        blocks = tuple(
            b if isinstance(b.input_offsets, tuple) else dataclasses.replace(b, input_offsets=tuple(b.input_offsets))
            for b in blocks
        )
        object.__setattr__(self, "blocks", blocks)
        check_genome(self)

    # ------------------------------------------------------------ conversion
    @classmethod
    def from_block_specs(cls, block_specs: Sequence[Sequence], **stem_and_levels) -> "Genome":
        """Build from Model Garden style tuples ``(level, fn, (in0, in1), is_output)``."""
        blocks = []
        for number, spec in enumerate(block_specs, start=1):
            if len(spec) != 4:
                raise GenomeError(
                    f"block {number}: expected (level, block_fn, (input0, input1), is_output), got {spec!r}"
                )
            level, fn, offsets, is_output = spec
            blocks.append(BlockSpec(level, fn, tuple(offsets), is_output))
        return cls(tuple(blocks), **stem_and_levels)

    def to_block_specs(self) -> list[tuple]:
        """The blocks as Model Garden ``block_specs`` tuples."""
        return [b.to_tuple() for b in self.blocks]

    def to_dict(self) -> dict:
        """A plain dict (JSON/YAML ready) that :meth:`from_dict` reads back (:mod:`search_spaces.genome_format`)."""
        return genome_to_dict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Genome":
        """Read a dict written by :meth:`to_dict`; blocks may also be mappings with named fields."""
        return cls(**genome_fields(data))

    def to_yaml(self) -> str:
        """YAML text, one block per line."""
        return genome_to_yaml(self)

    @classmethod
    def from_yaml(cls, text: str) -> "Genome":
        """Parse YAML text (safe loader only)."""
        return cls.from_dict(parse_genome_text(text, "yaml"))

    def to_json(self) -> str:
        """JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Genome":
        """Parse JSON text."""
        return cls.from_dict(parse_genome_text(text, "json"))

    def save(self, path: str | os.PathLike) -> None:
        """Write YAML, or JSON when the path ends in ``.json``."""
        text = self.to_json() if str(path).endswith(".json") else self.to_yaml()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Genome":
        """Read a YAML or JSON genome file; errors name the file."""
        text = read_text(path, GenomeError, what="genome file", hint="is this a genome file?")
        try:
            return cls.from_json(text) if str(path).endswith(".json") else cls.from_yaml(text)
        except GenomeError as err:
            raise GenomeError(f"{path}: {err}") from None

    # ------------------------------------------------------------- structure
    @property
    def num_nodes(self) -> int:
        """Stem nodes plus blocks."""
        return self.num_init_blocks + len(self.blocks)

    @property
    def block_levels(self) -> list[int]:
        """Every level a node of this genome sits at (stem included)."""
        stem = get_family(self.family).stem_node_levels(self.num_init_blocks)
        return stem + [b.level for b in self.blocks]

    def resolve(self) -> ResolvedGraph:
        """Apply the merge rule and find which nodes reach an endpoint (:mod:`search_spaces.graph`).

        The rule (as in the reference SpineNet): when an output block is
        built, every earlier node that so far feeds nothing and already has
        the output's level and channel count is summed into it unchanged.
        """
        return resolve_graph(self)

    @functools.cached_property
    def fingerprint(self) -> str:
        """16 hex digits, equal for genomes that describe the same network (:mod:`search_spaces.fingerprint`).

        The hash covers the live computation graph only, with parents as
        unordered sets, so parent order, dead blocks and the build order of
        independent blocks do not change it.
        """
        return genome_fingerprint(self)
