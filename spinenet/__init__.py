"""SpineNet: the seed genome, its scalings, the decoder and the analytic cost model.

Importing this package does not import TensorFlow; ``decode`` and
``build_spinenet`` load it on first use.

Examples:
    >>> from spinenet import SPINENET_49, build_spinenet
    >>> backbone = build_spinenet("49", input_shape=(640, 640, 3))  # doctest: +SKIP
    >>> backbone.count_params()  # doctest: +SKIP
    21920192
"""

from spinenet.specs import MOBILE_SCALING_MAP, SCALING_MAP, SPINENET_49, SPINENET_MOBILE_49, scaling_for

_LAZY = {
    "decode": "spinenet.decoder",
    "build_spinenet": "spinenet.decoder",
    "build_spinenet_mobile": "spinenet.decoder",
    "ScalePermutedBackbone": "spinenet.decoder",
    "DecodeError": "spinenet.decoder",
}

__all__ = ["MOBILE_SCALING_MAP", "SCALING_MAP", "SPINENET_49", "SPINENET_MOBILE_49", "scaling_for", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spinenet' has no attribute {name!r}")
