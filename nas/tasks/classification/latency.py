"""The classification head as LiteRT kernels, for the latency predictor (pure Python)."""

from __future__ import annotations

from spinenet.latency.kernels import FUSED_ACTIVATIONS, Kernel


def classification_head_kernels(*, num_classes: int, input_size: int, min_level: int, max_level: int,
                                in_channels: int, projection_filters: int, activation: str) -> list[Kernel]:
    """Kernels of :func:`~nas.tasks.classification.head.classification_head` and its softmax.

    Every level above the finest is upsampled to it, the levels are summed
    (one addition of all of them) and scaled, then the optional projection,
    the global mean, the dense layer and the softmax.

    Examples:
        >>> ks = classification_head_kernels(num_classes=4, input_size=64, min_level=3, max_level=7,
        ...                                  in_channels=16, projection_filters=0, activation="relu")
        >>> [k.op for k in ks]
        ['upsample', 'upsample', 'upsample', 'upsample', 'add', 'mul', 'mean', 'dense', 'act']
    """
    side = -(-input_size // 2**min_level)
    kernels = [Kernel("upsample", -(-input_size // 2**level), -(-input_size // 2**level), in_channels, in_channels,
                      scale=2 ** (level - min_level)) for level in range(min_level + 1, max_level + 1)]
    levels = max_level - min_level + 1
    channels = in_channels
    if levels > 1:
        kernels.append(Kernel("add", side, side, channels, channels, inputs=levels))
        kernels.append(Kernel("mul", side, side, channels, channels, inputs=2))  # the average's 1 / levels
    if projection_filters:
        fused = activation if activation in FUSED_ACTIVATIONS else "none"
        kernels.append(Kernel("conv", side, side, channels, projection_filters, 1, act=fused))
        if fused == "none":
            kernels.append(Kernel("act", side, side, projection_filters, projection_filters, act=activation))
        channels = projection_filters
    kernels.append(Kernel("mean", side, side, channels, channels))
    kernels.append(Kernel("dense", 1, 1, channels, num_classes))
    kernels.append(Kernel("act", 1, 1, num_classes, num_classes, act="softmax"))
    return kernels
