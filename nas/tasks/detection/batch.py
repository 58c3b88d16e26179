"""One fixed batch of detection training data and the detector's loss, for zero-cost proxies.

Examples:
    >>> from nas.experiment import load_train_config
    >>> images, targets = minibatch(load_train_config(), batch_size=4, seed=0)  # doctest: +SKIP
    >>> images.shape, sorted(targets)  # doctest: +SKIP
    ((4, 128, 128, 3), ['boxes', 'classes'])
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nas.tasks.detection.dataset import prepare_data


def minibatch(train_config, batch_size: int, seed: int):
    """``batch_size`` training images picked by ``seed``, unaugmented, with their padded boxes and classes."""
    from nas.tasks.detection.pipeline import make_dataset

    data = train_config.task.data
    train, _ = prepare_data(data)
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(train), size=min(batch_size, len(train)), replace=False).tolist())
    subset = dataclasses.replace(
        train, image_paths=[train.image_paths[i] for i in picked], image_ids=[train.image_ids[i] for i in picked],
        image_sizes=[train.image_sizes[i] for i in picked], boxes=[train.boxes[i] for i in picked],
        labels=[train.labels[i] for i in picked], skipped={})
    ds = make_dataset(subset, image_size=data.image_size, batch_size=len(picked), training=False,
                      max_instances=data.max_instances, cache=False)
    images, targets = next(iter(ds))
    return images.numpy(), {"boxes": targets["boxes"].numpy(), "classes": targets["classes"].numpy()}


def loss_fn(genome, train_config, num_classes: int):
    """Focal plus weighted Huber loss of a detector's outputs against a :func:`minibatch`'s targets."""
    import tensorflow as tf

    from nas.tasks.detection.anchors import generate_anchors, label_anchors
    from nas.tasks.detection.head import detection_losses

    task = train_config.task
    anchors = tf.constant(generate_anchors(task.data.image_size, genome.min_level, genome.max_level,
                                           task.head.num_scales, task.head.aspect_ratios, task.head.anchor_size))

    def loss(outputs, targets):
        labels, box_targets = label_anchors(anchors, tf.constant(targets["boxes"]), tf.constant(targets["classes"]),
                                            task.loss.positive_iou, task.loss.negative_iou)
        class_loss, box_loss = detection_losses(outputs, labels, box_targets, task.loss)
        return class_loss + task.loss.box_loss_weight * box_loss

    return loss
