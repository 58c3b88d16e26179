"""Analytic cost of the classification head, to add to the backbone's (pure Python)."""

from __future__ import annotations

from typing import Sequence, Union

from search_spaces.block_fns import BN_PARAMS_PER_CHANNEL
from spinenet.cost import Cost


def classification_head_cost(*, num_classes: int, input_size: Union[int, Sequence[int]], min_level: int,
                             in_channels: int, projection_filters: int = 0) -> Cost:
    """Parameters and multiply-adds of :func:`~nas.tasks.classification.head.classification_head`.

    Upsampling, averaging, pooling and dropout have no parameters and no
    multiply-adds; the optional 1x1 projection runs at ``min_level``, and the
    dense layer once per image.

    Examples:
        >>> c = classification_head_cost(num_classes=1000, input_size=224, min_level=3, in_channels=256)
        >>> c.params, c.multiply_adds
        (257000, 256000)
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    params = madds = 0
    channels = in_channels
    if projection_filters:
        pixels = -(-height // 2**min_level) * -(-width // 2**min_level)
        params += channels * projection_filters + BN_PARAMS_PER_CHANNEL * projection_filters
        madds += pixels * channels * projection_filters
        channels = projection_filters
    params += channels * num_classes + num_classes
    madds += channels * num_classes
    return Cost(params, madds)
