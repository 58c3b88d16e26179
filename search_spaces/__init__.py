"""Genomes and search spaces of scale-permuted backbones (no TensorFlow here).

``ScalePermutedSpace`` (which speaks Optuna's trial API) loads on first use,
so importing genomes never imports Optuna.

Example:
    >>> from search_spaces import ScalePermutedSpace
    >>> len(ScalePermutedSpace().parameters)
    52
"""

from search_spaces.block_fns import BLOCK_FNS, BlockFn, find_block_variant, register_block_fn, register_block_variant
from search_spaces.families import FAMILIES, BlockFamily, get_family, register_family
from search_spaces.genome import FILTER_SIZE_MAP, BlockSpec, Genome, GenomeError

_LAZY = {"ScalePermutedSpace": "search_spaces.space", "SpaceError": "search_spaces.space",
         "InfeasibleGenome": "search_spaces.space"}

__all__ = ["BLOCK_FNS", "BlockFamily", "BlockFn", "BlockSpec", "FAMILIES", "FILTER_SIZE_MAP", "Genome", "GenomeError",
           "find_block_variant", "get_family", "register_block_fn", "register_block_variant", "register_family",
           *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")
