"""Genomes and search spaces of scale-permuted backbones (no TensorFlow here)."""

from search_spaces.block_fns import BLOCK_FNS, BlockFn, find_block_variant, register_block_fn, register_block_variant
from search_spaces.families import FAMILIES, BlockFamily, get_family, register_family
from search_spaces.genome import FILTER_SIZE_MAP, BlockSpec, Genome, GenomeError

__all__ = ["BLOCK_FNS", "BlockFamily", "BlockFn", "BlockSpec", "FAMILIES", "FILTER_SIZE_MAP", "Genome", "GenomeError",
           "find_block_variant", "get_family", "register_block_fn", "register_block_variant", "register_family"]
