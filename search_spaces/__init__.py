"""Genomes of scale-permuted backbones: the vocabulary, with no TensorFlow and no Optuna here.

:mod:`~search_spaces.genome` (the genome), :mod:`~search_spaces.block_spec` (one block),
:mod:`~search_spaces.genome_rules` (the rules a genome keeps),
:mod:`~search_spaces.genome_format` (its files), :mod:`~search_spaces.graph`
(the network it describes), :mod:`~search_spaces.fingerprint` (its hash),
:mod:`~search_spaces.block_fns` (the block names a genome may use),
:mod:`~search_spaces.families` (block families) and
:mod:`~search_spaces.features` (interpretable features). The Optuna encoding
is :mod:`search_spaces.space`, one layer down: ``from search_spaces.space
import ScalePermutedSpace``.

Examples:
    >>> from search_spaces import Genome
    >>> from search_spaces.space import ScalePermutedSpace
    >>> len(ScalePermutedSpace().parameters)
    52
"""

from search_spaces.block_fns import BLOCK_FNS, BlockFn, find_block_variant, register_block_fn, register_block_variant
from search_spaces.families import FAMILIES, BlockFamily, get_family, register_family
from search_spaces.block_spec import BlockSpec
from search_spaces.genome import FILTER_SIZE_MAP, Genome
from search_spaces.genome_rules import GenomeError

__all__ = ["BLOCK_FNS", "BlockFamily", "BlockFn", "BlockSpec", "FAMILIES", "FILTER_SIZE_MAP", "Genome", "GenomeError",
           "find_block_variant", "get_family", "register_block_fn", "register_block_variant", "register_family"]
