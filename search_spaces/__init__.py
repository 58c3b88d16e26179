"""Genomes and search spaces of scale-permuted backbones (no TensorFlow here).

``ScalePermutedSpace`` (which speaks Optuna's trial API) loads on first use,
so importing genomes never imports Optuna.

Example:
    >>> from search_spaces import ScalePermutedSpace
    >>> len(ScalePermutedSpace().parameters)
    52
"""

from search_spaces.block_fns import BLOCK_FNS, BlockFn, register_block_fn
from search_spaces.genome import FILTER_SIZE_MAP, BlockSpec, Genome, GenomeError

_LAZY = {"ScalePermutedSpace": "search_spaces.space", "SpaceError": "search_spaces.space",
         "InfeasibleGenome": "search_spaces.space"}

__all__ = ["BLOCK_FNS", "BlockFn", "BlockSpec", "FILTER_SIZE_MAP", "Genome", "GenomeError", "register_block_fn",
           *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")
