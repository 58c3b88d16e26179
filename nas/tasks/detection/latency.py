"""The RetinaNet head and post-process as LiteRT kernels, for the latency predictor (pure Python)."""

from __future__ import annotations

import dataclasses

from spinenet.latency.kernels import FUSED_ACTIVATIONS, Kernel


def retinanet_head_kernels(*, num_classes: int, input_size: int, min_level: int, max_level: int, in_channels: int,
                           num_convs: int, num_filters: int, num_anchors: int, separable: bool, activation: str,
                           pre_nms_top_k: int, max_detections: int) -> list[Kernel]:
    """Kernels of :func:`~nas.tasks.detection.head.retinanet_head` and the deployed post-process.

    Batch norm folds into the convolution before it; a ReLU fuses into it,
    any other activation is a kernel of its own. A separable convolution is
    a depthwise then a 1x1 kernel. The post-process (box decoding, top-k and
    NMS) is one ``detect`` kernel over every anchor.

    Examples:
        >>> ks = retinanet_head_kernels(num_classes=3, input_size=128, min_level=3, max_level=7, in_channels=16,
        ...                             num_convs=1, num_filters=16, num_anchors=9, separable=False,
        ...                             activation="relu", pre_nms_top_k=1000, max_detections=100)
        >>> len(ks), ks[0].key, ks[-1].key
        (21, 'conv k3 s1 16>16 16x16 +relu', 'detect k1 s1 3>3 3069x1 +none image_size=128,levels=3-7,top_k=1000,max_detections=100')
    """
    fused = activation if activation in FUSED_ACTIVATIONS else "none"
    kernels = []
    anchors = 0
    for level in range(min_level, max_level + 1):
        side = -(-input_size // 2**level)
        anchors += side * side * num_anchors
        for outputs in (num_anchors * num_classes, num_anchors * 4):
            channels = in_channels
            for _ in range(num_convs):
                kernels += _conv3x3(side, channels, num_filters, separable, fused)
                if fused == "none":
                    kernels.append(Kernel("act", side, side, num_filters, num_filters, act=activation))
                channels = num_filters
            kernels += _conv3x3(side, channels, outputs, separable, "none")
    kernels.append(Kernel("detect", anchors, 1, num_classes, num_classes,
                          extra=(("image_size", input_size), ("levels", f"{min_level}-{max_level}"),
                                 ("top_k", min(pre_nms_top_k, anchors)), ("max_detections", max_detections))))
    return kernels


def postprocess_builder(train_config):
    """The calibration builder of ``detect`` kernels: the deployed post-process alone, on head outputs.

    Its class logits sit at the head's initial bias (every score near 0.01,
    under the score threshold), as in an untrained detector on random
    pixels, which is what ``spinenas latency`` times: NMS's work depends on
    how many boxes pass the threshold, so a trained detector on real images
    spends more there.
    """
    task = train_config.task

    def build(kernel: Kernel):
        import numpy as np
        import tensorflow as tf

        from nas.tasks.detection.anchors import generate_anchors
        from nas.tasks.detection.deploy import postprocess
        from nas.tasks.detection.head import PRIOR_BIAS

        extra = dict(kernel.extra)
        low, high = (int(v) for v in extra["levels"].split("-"))
        size = int(extra["image_size"])
        anchors = generate_anchors(size, low, high, task.head.num_scales, task.head.aspect_ratios,
                                   task.head.anchor_size)
        if anchors.shape[0] != kernel.height:
            raise ValueError(f"kernel {kernel.key}: the head config makes {anchors.shape[0]} anchors")
        evaluation = dataclasses.replace(task.evaluation, pre_nms_top_k=int(extra["top_k"]),
                                         max_detections=int(extra["max_detections"]))
        specs = [tf.TensorSpec([1, kernel.height, kernel.channels], tf.float32),
                 tf.TensorSpec([1, kernel.height, 4], tf.float32)]
        function = tf.function(lambda logits, deltas: postprocess(logits, deltas, anchors, evaluation, size),
                               input_signature=specs).get_concrete_function()
        rng = np.random.default_rng(0)
        logits = (PRIOR_BIAS + 0.1 * rng.standard_normal([1, kernel.height, kernel.channels])).astype(np.float32)
        deltas = (0.1 * rng.standard_normal([1, kernel.height, 4])).astype(np.float32)
        return function, [logits, deltas], tf.Module()

    return build


def _conv3x3(side: int, c_in: int, c_out: int, separable: bool, act: str) -> list[Kernel]:
    if separable:
        return [Kernel("dwconv", side, side, c_in, c_in, 3), Kernel("conv", side, side, c_in, c_out, 1, act=act)]
    return [Kernel("conv", side, side, c_in, c_out, 3, act=act)]
