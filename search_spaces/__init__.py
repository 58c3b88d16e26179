"""Genomes and search spaces of scale-permuted backbones (no TensorFlow here)."""

from search_spaces.block_fns import BLOCK_FNS, BlockFn, register_block_fn
from search_spaces.genome import FILTER_SIZE_MAP, BlockSpec, Genome, GenomeError

__all__ = ["BLOCK_FNS", "BlockFn", "BlockSpec", "FILTER_SIZE_MAP", "Genome", "GenomeError", "register_block_fn"]
