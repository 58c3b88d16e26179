"""Analytic cost of the RetinaNet head, to add to the backbone's (pure Python)."""

from __future__ import annotations

from typing import Sequence, Union

from search_spaces.block_fns import BN_PARAMS_PER_CHANNEL
from spinenet.cost import Cost


def retinanet_head_cost(*, num_classes: int, input_size: Union[int, Sequence[int]], min_level: int,
                        max_level: int, in_channels: int, num_convs: int = 4, num_filters: int = 256,
                        num_anchors: int = 9, separable: bool = False) -> Cost:
    """Parameters and multiply-adds of :func:`~nas.tasks.detection.head.retinanet_head`.

    ``separable``: depthwise-separable convolutions (``HeadConfig.separable``).

    Examples:
        >>> c = retinanet_head_cost(num_classes=91, input_size=640, min_level=3, max_level=7, in_channels=256)
        >>> c.params, round(c.multiply_adds / 1e9, 2)
        (6732375, 57.02)
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    levels = max_level - min_level + 1
    params = madds_per_pixel = 0
    for outputs in (num_anchors * num_classes, num_anchors * 4):
        c_in = in_channels
        for _ in range(num_convs):
            params += _conv3x3_weights(c_in, num_filters, separable) + num_filters
            params += BN_PARAMS_PER_CHANNEL * num_filters * levels
            madds_per_pixel += _conv3x3_weights(c_in, num_filters, separable)
            c_in = num_filters
        params += _conv3x3_weights(c_in, outputs, separable) + outputs
        madds_per_pixel += _conv3x3_weights(c_in, outputs, separable)
    pixels = sum(-(-height // 2**l) * -(-width // 2**l) for l in range(min_level, max_level + 1))
    return Cost(params, pixels * madds_per_pixel)


def _conv3x3_weights(c_in: int, c_out: int, separable: bool) -> int:
    # Also the multiply-adds per output pixel: each weight is used once per pixel.
    return 9 * c_in + c_in * c_out if separable else 9 * c_in * c_out
