"""A genome's file formats: plain data, YAML and JSON, and reading them back with errors that name the key.

``family`` appears only for a family other than ``spinenet``, so SpineNet
genomes keep the files they always had.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from search_spaces.block_spec import BlockSpec
from search_spaces.families import DEFAULT_FAMILY
from search_spaces.genome_rules import GenomeError, suggest

GENOME_KEYS = ("family", "min_level", "max_level", "stem", "blocks")
STEM_KEYS = ("num_init_blocks", "block_fn")
BLOCK_KEYS = ("level", "block_fn", "input_offsets", "is_output")


def genome_to_dict(genome) -> dict:
    """A :class:`~search_spaces.genome.Genome` as a plain dict (JSON/YAML ready)."""
    family = {} if genome.family == DEFAULT_FAMILY else {"family": genome.family}
    return {
        **family,
        "min_level": genome.min_level,
        "max_level": genome.max_level,
        "stem": {"num_init_blocks": genome.num_init_blocks, "block_fn": genome.init_block_fn},
        "blocks": [
            [b.level, b.block_fn, list(b.input_offsets), b.is_output] for b in genome.blocks
        ],
    }


def genome_fields(data: Any) -> dict:
    """The ``Genome`` constructor's arguments from a dict :func:`genome_to_dict` wrote (blocks may be mappings)."""
    if not isinstance(data, dict):
        raise GenomeError(f"a genome must be a mapping with keys {list(GENOME_KEYS)}, got {type(data).__name__}")
    for key in data:
        if key not in GENOME_KEYS:
            raise GenomeError(f"unknown genome key {key!r}{suggest(key, GENOME_KEYS)}")
    if "blocks" not in data:
        raise GenomeError("genome is missing the 'blocks' list")
    stem = data.get("stem", {}) or {}
    if not isinstance(stem, dict):
        raise GenomeError(f"'stem' must be a mapping with keys {list(STEM_KEYS)}")
    for key in stem:
        if key not in STEM_KEYS:
            raise GenomeError(f"unknown stem key {key!r}{suggest(key, STEM_KEYS)}")
    raw_blocks = data["blocks"]
    if not isinstance(raw_blocks, list):
        raise GenomeError("'blocks' must be a list")
    return {
        "blocks": tuple(_block_from_data(item, number) for number, item in enumerate(raw_blocks, start=1)),
        "min_level": data.get("min_level", 3),
        "max_level": data.get("max_level", 7),
        "num_init_blocks": stem.get("num_init_blocks", 2),
        "init_block_fn": stem.get("block_fn"),
        "family": data.get("family", DEFAULT_FAMILY),
    }


def genome_to_yaml(genome) -> str:
    """YAML text of a genome, one block per line."""
    head = yaml.safe_dump(
        {k: v for k, v in genome_to_dict(genome).items() if k != "blocks"}, sort_keys=False
    )
    lines = [
        f"- [{b.level}, {b.block_fn}, [{b.input_offsets[0]}, {b.input_offsets[1]}], "
        f"{str(b.is_output).lower()}]"
        for b in genome.blocks
    ]
    return head + "# [level, block_fn, [input_offset0, input_offset1], is_output]\nblocks:\n" + "\n".join(lines) + "\n"


def parse_genome_text(text: str, fmt: str) -> Any:
    """The data in genome text of format ``"json"`` or ``"yaml"`` (safe loader only); bad syntax is a GenomeError."""
    try:
        return json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise GenomeError(f"malformed JSON: {err}") from None
    except yaml.YAMLError as err:
        raise GenomeError(f"malformed YAML: {' '.join(str(err).split())}") from None


def _block_from_data(item: Any, number: int) -> BlockSpec:
    where = f"block {number}"
    if isinstance(item, dict):
        for key in item:
            if key not in BLOCK_KEYS:
                raise GenomeError(f"{where}: unknown key {key!r}{suggest(key, BLOCK_KEYS)}")
        missing = [k for k in BLOCK_KEYS[:3] if k not in item]
        if missing:
            raise GenomeError(f"{where}: missing {missing}")
        level, fn, offsets, is_output = (item.get(k, False) for k in BLOCK_KEYS)
    elif isinstance(item, (list, tuple)) and len(item) == 4:
        level, fn, offsets, is_output = item
    else:
        raise GenomeError(
            f"{where}: expected [level, block_fn, [input0, input1], is_output], got {item!r}"
        )
    if not isinstance(offsets, (list, tuple)):
        raise GenomeError(f"{where}: input offsets must be a list of two node indices, got {offsets!r}")
    return BlockSpec(level, fn, tuple(offsets), is_output)
