"""The scale-permuted search space: fixed-range integer parameters <-> genomes.

:class:`ScalePermutedSpace` (:mod:`~search_spaces.space.scale_permuted`) is the
public way in, with :class:`SpaceError` and :class:`InfeasibleGenome`
(:mod:`~search_spaces.space.errors`).

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

Examples:
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

from search_spaces.space.errors import InfeasibleGenome, SpaceError
from search_spaces.space.scale_permuted import ScalePermutedSpace

__all__ = ["InfeasibleGenome", "ScalePermutedSpace", "SpaceError"]
