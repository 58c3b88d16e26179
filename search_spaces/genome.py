"""Genomes: scale-permuted architectures as plain, validated data.

A genome is a stem (``num_init_blocks`` level-2 blocks, nodes ``0 .. n-1``)
followed by a list of blocks. Block ``i`` (counted from 1, as in the SpineNet
paper and the decoder's layer names ``block{i}_...``) becomes node
``num_init_blocks + i - 1``; its two ``input_offsets`` index earlier nodes.

Nothing here imports TensorFlow or Optuna.

Example:
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
import difflib
import functools
import hashlib
import json
import os
from typing import Any, Iterable, Sequence

import yaml

from search_spaces.block_fns import BLOCK_FNS
from search_spaces.families import DEFAULT_FAMILY, FamilyError, get_family

# The SpineNet family's filter map, kept for existing imports; each genome's
# family (search_spaces.families) owns its own map.
FILTER_SIZE_MAP = get_family(DEFAULT_FAMILY).filter_size_map
STEM_LEVEL = 2

_GENOME_KEYS = ("family", "min_level", "max_level", "stem", "blocks")
_STEM_KEYS = ("num_init_blocks", "block_fn")
_BLOCK_KEYS = ("level", "block_fn", "input_offsets", "is_output")


class GenomeError(ValueError):
    """A genome breaks a structural rule; the message names the block and the rule."""


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One block: its level, block function, two parent nodes, and whether it is an output."""

    level: int
    block_fn: str
    input_offsets: tuple[int, int]
    is_output: bool = False

    def to_tuple(self) -> tuple:
        """The Model Garden ``block_specs`` form ``(level, fn, (in0, in1), is_output)``."""
        return (self.level, self.block_fn, tuple(self.input_offsets), self.is_output)


@dataclasses.dataclass(frozen=True)
class ResolvedNode:
    """A node of the network a genome describes, after applying the merge rule.

    ``parents`` are resampled to this node's level and width; ``merged`` are
    earlier unused nodes of identical shape summed in as they are (only output
    blocks merge). ``live`` is False for blocks that reach no endpoint: the
    decoder does not build them and the cost model does not count them.
    """

    index: int
    level: int
    block_fn: str
    block: int | None  # 1-based block number, None for stem nodes
    is_output: bool
    parents: tuple[int, ...]
    merged: tuple[int, ...]
    live: bool


@dataclasses.dataclass(frozen=True)
class ResolvedGraph:
    """The nodes of a genome with merges resolved, and the node feeding each endpoint level."""

    nodes: tuple[ResolvedNode, ...]
    endpoints: dict  # level -> node index


def _closest(key: str, valid: Iterable[str]) -> str:
    match = difflib.get_close_matches(str(key), list(valid), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _check_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenomeError(f"{where} must be an integer, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Genome:
    """A scale-permuted architecture: stem settings, blocks, the endpoint level range and its block family.

    Construction validates the genome and raises :class:`GenomeError` naming
    the first rule broken. Instances are immutable and hashable.
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
        self._validate()

    # ----------------------------------------------------------------- checks
    def _validate(self) -> None:
        _check_int(self.min_level, "min_level")
        _check_int(self.max_level, "max_level")
        family = get_family(self.family)
        levels = [family.min_block_level, family.max_block_level]
        if not levels[0] <= self.min_level <= self.max_level <= levels[-1]:
            raise GenomeError(
                f"need {levels[0]} <= min_level <= max_level <= {levels[-1]}, "
                f"got min_level={self.min_level}, max_level={self.max_level}"
            )
        if _check_int(self.num_init_blocks, "stem num_init_blocks") < 2:
            raise GenomeError(
                f"stem num_init_blocks must be at least 2 (each block needs two "
                f"distinct parents), got {self.num_init_blocks}"
            )
        if family.num_init_blocks is not None and self.num_init_blocks != family.num_init_blocks:
            raise GenomeError(f"stem num_init_blocks must be {family.num_init_blocks} in the "
                              f"{family.name} family, got {self.num_init_blocks}")
        if self.init_block_fn not in BLOCK_FNS:
            raise GenomeError(
                f"stem: unknown block fn {self.init_block_fn!r}"
                f"{_closest(self.init_block_fn, BLOCK_FNS)}; registered: {', '.join(sorted(BLOCK_FNS))}"
            )
        _check_family(self.init_block_fn, family.name, "stem")
        if not self.blocks:
            raise GenomeError("genome has no blocks")
        outputs: dict[int, int] = {}
        for number, block in enumerate(self.blocks, start=1):
            where = f"block {number}"
            node = self.num_init_blocks + number - 1
            _check_int(block.level, f"{where}: level")
            if not levels[0] <= block.level <= levels[1]:
                raise GenomeError(
                    f"{where}: level {block.level} is outside the filter map "
                    f"(levels {levels[0]}..{levels[-1]})"
                )
            if not isinstance(block.block_fn, str) or block.block_fn not in BLOCK_FNS:
                raise GenomeError(
                    f"{where}: unknown block fn {block.block_fn!r}"
                    f"{_closest(block.block_fn, BLOCK_FNS)}; registered: {', '.join(sorted(BLOCK_FNS))}"
                )
            _check_family(block.block_fn, family.name, where)
            if len(block.input_offsets) != 2:
                raise GenomeError(
                    f"{where}: needs exactly 2 input offsets, got {list(block.input_offsets)}"
                )
            for offset in block.input_offsets:
                _check_int(offset, f"{where}: input offset")
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
                if not self.min_level <= block.level <= self.max_level:
                    raise GenomeError(
                        f"{where}: output at level {block.level} is outside "
                        f"[min_level, max_level] = [{self.min_level}, {self.max_level}]"
                    )
                if block.level in outputs:
                    raise GenomeError(
                        f"{where}: duplicate output level {block.level} "
                        f"(block {outputs[block.level]} is already the level-{block.level} output)"
                    )
                outputs[block.level] = number
        missing = [l for l in range(self.min_level, self.max_level + 1) if l not in outputs]
        if missing:
            raise GenomeError(
                f"no output block for level(s) {missing}; each level in "
                f"[{self.min_level}, {self.max_level}] needs exactly one"
            )

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
        """A plain dict (JSON/YAML ready) that :meth:`from_dict` reads back.

        ``family`` appears only for a family other than ``spinenet``, so
        SpineNet genomes keep the files they always had.
        """
        family = {} if self.family == DEFAULT_FAMILY else {"family": self.family}
        return {
            **family,
            "min_level": self.min_level,
            "max_level": self.max_level,
            "stem": {"num_init_blocks": self.num_init_blocks, "block_fn": self.init_block_fn},
            "blocks": [
                [b.level, b.block_fn, list(b.input_offsets), b.is_output] for b in self.blocks
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> "Genome":
        """Read a dict written by :meth:`to_dict`; blocks may also be mappings with named fields."""
        if not isinstance(data, dict):
            raise GenomeError(f"a genome must be a mapping with keys {list(_GENOME_KEYS)}, got {type(data).__name__}")
        for key in data:
            if key not in _GENOME_KEYS:
                raise GenomeError(f"unknown genome key {key!r}{_closest(key, _GENOME_KEYS)}")
        if "blocks" not in data:
            raise GenomeError("genome is missing the 'blocks' list")
        stem = data.get("stem", {}) or {}
        if not isinstance(stem, dict):
            raise GenomeError(f"'stem' must be a mapping with keys {list(_STEM_KEYS)}")
        for key in stem:
            if key not in _STEM_KEYS:
                raise GenomeError(f"unknown stem key {key!r}{_closest(key, _STEM_KEYS)}")
        raw_blocks = data["blocks"]
        if not isinstance(raw_blocks, list):
            raise GenomeError("'blocks' must be a list")
        blocks = [_block_from_data(item, number) for number, item in enumerate(raw_blocks, start=1)]
        return cls(
            tuple(blocks),
            min_level=data.get("min_level", 3),
            max_level=data.get("max_level", 7),
            num_init_blocks=stem.get("num_init_blocks", 2),
            init_block_fn=stem.get("block_fn"),
            family=data.get("family", DEFAULT_FAMILY),
        )

    def to_yaml(self) -> str:
        """YAML text, one block per line."""
        head = yaml.safe_dump(
            {k: v for k, v in self.to_dict().items() if k != "blocks"}, sort_keys=False
        )
        lines = [
            f"- [{b.level}, {b.block_fn}, [{b.input_offsets[0]}, {b.input_offsets[1]}], "
            f"{str(b.is_output).lower()}]"
            for b in self.blocks
        ]
        return head + "# [level, block_fn, [input_offset0, input_offset1], is_output]\nblocks:\n" + "\n".join(lines) + "\n"

    @classmethod
    def from_yaml(cls, text: str) -> "Genome":
        """Parse YAML text (safe loader only)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise GenomeError(f"malformed YAML: {_one_line(err)}") from None
        return cls.from_dict(data)

    def to_json(self) -> str:
        """JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Genome":
        """Parse JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise GenomeError(f"malformed JSON: {err}") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        """Write YAML, or JSON when the path ends in ``.json``."""
        text = self.to_json() if str(path).endswith(".json") else self.to_yaml()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Genome":
        """Read a YAML or JSON genome file; errors name the file."""
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except UnicodeDecodeError as err:
            raise GenomeError(f"{path}: not UTF-8 text (byte {err.start}); is this a genome file?") from None
        except OSError as err:
            raise GenomeError(f"{path}: cannot read genome file ({err.strerror})") from None
        except UnicodeDecodeError as err:
            raise GenomeError(f"{path}: not UTF-8 text (byte {err.start}); a genome file is YAML or JSON") from None
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
        """Apply the merge rule and find which nodes reach an endpoint.

        The rule (as in the reference SpineNet): when an output block is
        built, every earlier node that so far feeds nothing and already has
        the output's level and channel count is summed into it unchanged.
        """
        return _resolve(self)

    @functools.cached_property
    def fingerprint(self) -> str:
        """16 hex digits, equal for genomes that describe the same network.

        The hash covers the live computation graph only, with parents as
        unordered sets, so parent order, dead blocks and the build order of
        independent blocks do not change it.
        """
        return _fingerprint(self)


def _check_family(block_fn: str, family: str, where: str) -> None:
    owner = BLOCK_FNS[block_fn].family
    if owner != family:
        allowed = ", ".join(sorted(n for n, fn in BLOCK_FNS.items() if fn.family == family))
        raise GenomeError(f"{where}: block fn {block_fn!r} belongs to the {owner} family, not {family} "
                          f"(set the genome's family, or use one of: {allowed})")


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def _block_from_data(item: Any, number: int) -> BlockSpec:
    where = f"block {number}"
    if isinstance(item, dict):
        for key in item:
            if key not in _BLOCK_KEYS:
                raise GenomeError(f"{where}: unknown key {key!r}{_closest(key, _BLOCK_KEYS)}")
        missing = [k for k in _BLOCK_KEYS[:3] if k not in item]
        if missing:
            raise GenomeError(f"{where}: missing {missing}")
        level, fn, offsets, is_output = (item.get(k, False) for k in _BLOCK_KEYS)
    elif isinstance(item, (list, tuple)) and len(item) == 4:
        level, fn, offsets, is_output = item
    else:
        raise GenomeError(
            f"{where}: expected [level, block_fn, [input0, input1], is_output], got {item!r}"
        )
    if not isinstance(offsets, (list, tuple)):
        raise GenomeError(f"{where}: input offsets must be a list of two node indices, got {offsets!r}")
    return BlockSpec(level, fn, tuple(offsets), is_output)


def _resolve(genome: Genome) -> ResolvedGraph:
    expansion = {name: fn.expansion for name, fn in BLOCK_FNS.items()}
    n_init = genome.num_init_blocks
    levels = genome.block_levels
    fns = [genome.init_block_fn] * n_init + [b.block_fn for b in genome.blocks]
    # The reference starts every node's out-degree at zero, the stem chain included.
    out_degree = [0] * genome.num_nodes
    parents: list[tuple[int, ...]] = [((i - 1,) if i else ()) for i in range(n_init)]
    merged: list[tuple[int, ...]] = [() for _ in range(n_init)]
    endpoints: dict[int, int] = {}
    for number, block in enumerate(genome.blocks, start=1):
        node = n_init + number - 1
        for offset in block.input_offsets:
            out_degree[offset] += 1
        extra = []
        if block.is_output:
            for j in range(node):
                if (
                    out_degree[j] == 0
                    and levels[j] == block.level
                    and expansion[fns[j]] == expansion[block.block_fn]
                ):
                    extra.append(j)
                    out_degree[j] += 1
            endpoints[block.level] = node
        parents.append(tuple(block.input_offsets))
        merged.append(tuple(extra))

    live = [False] * genome.num_nodes
    stack = list(endpoints.values())
    while stack:
        node = stack.pop()
        if not live[node]:
            live[node] = True
            stack.extend(parents[node] + merged[node])
    nodes = tuple(
        ResolvedNode(
            index=i,
            level=levels[i],
            block_fn=fns[i],
            block=(i - n_init + 1) if i >= n_init else None,
            is_output=i >= n_init and genome.blocks[i - n_init].is_output,
            parents=parents[i],
            merged=merged[i],
            live=live[i],
        )
        for i in range(genome.num_nodes)
    )
    return ResolvedGraph(nodes=nodes, endpoints=dict(sorted(endpoints.items())))


def _fingerprint(genome: Genome) -> str:
    graph = genome.resolve()
    # Merkle hash: a node's hash covers its own settings and, as a multiset,
    # the hashes of what feeds it, so structurally equal subnetworks hash equal.
    merkle: dict[int, str] = {}
    for node in graph.nodes:
        if not node.live:
            continue
        if node.block is None:
            key = ["stem", node.index, node.block_fn]
        else:
            key = [
                node.level,
                node.block_fn,
                sorted(merkle[p] for p in node.parents),
                sorted(merkle[m] for m in node.merged),
            ]
        merkle[node.index] = hashlib.sha256(json.dumps(key).encode()).hexdigest()
    # Canonical numbering by hash, so that sharing (one node feeding two
    # consumers) is part of the fingerprint and not only the tree shape.
    order = sorted(merkle, key=lambda i: (merkle[i], i))
    rank = {node: position for position, node in enumerate(order)}
    canonical = [
        [
            graph.nodes[i].level,
            graph.nodes[i].block_fn,
            sorted(rank[p] for p in graph.nodes[i].parents),
            sorted(rank[m] for m in graph.nodes[i].merged),
        ]
        for i in order
    ]
    document = {
        "levels": [genome.min_level, genome.max_level],
        "nodes": canonical,
        "endpoints": {str(level): rank[node] for level, node in graph.endpoints.items()},
    }
    if genome.family != DEFAULT_FAMILY:  # absent for SpineNet, so stored fingerprints stay valid
        document["family"] = genome.family
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
