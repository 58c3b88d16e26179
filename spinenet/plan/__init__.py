"""The layer plan: every layer a genome decodes to, as plain data (no TensorFlow).

The Keras decoder builds exactly these layers and the cost model counts
exactly these layers, so the two cannot drift apart:
:mod:`~spinenet.plan.builder` (the plan's data and the builder blocks write
to), :mod:`~spinenet.plan.block_plans` (the built-in blocks),
:mod:`~spinenet.plan.network` (a genome's whole plan) and
:mod:`~spinenet.plan.counting` (parameters and multiply-adds). A block
function registered with only a Keras ``build`` becomes one opaque
``custom`` layer, costed by its registered ``count_params``/``count_multiply_adds``.
"""

# Any use of the plan needs the built-in blocks' plans attached to their names first.
from spinenet.plan import block_plans  # noqa: F401
