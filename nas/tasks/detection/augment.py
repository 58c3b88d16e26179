"""Training augmentation of one detection example: scale jitter, a random crop or pad, a left-right flip."""

from __future__ import annotations


def augment(item, image_size: int, scale_jitter, flip: bool, seed):
    """Scale jitter, crop or pad, and flip of one example, every random number drawn from ``seed`` ([2] int64)."""
    import tensorflow as tf

    scale_seed, y_seed, x_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    image, boxes, classes = tf.cast(item["image"], tf.float32), item["boxes"], item["classes"]
    low, high = scale_jitter
    factor = tf.random.stateless_uniform([], scale_seed, low, high)
    scaled = tf.cast(tf.round(image_size * factor), tf.int32)
    image = tf.image.resize(image, [scaled, scaled], method="bilinear")
    # Random crop (zoomed in) or pad (zoomed out) back to the square size.
    room = tf.maximum(scaled - image_size, 0)
    oy = tf.random.stateless_uniform([], y_seed, 0, room + 1, dtype=tf.int32)
    ox = tf.random.stateless_uniform([], x_seed, 0, room + 1, dtype=tf.int32)
    image = tf.image.pad_to_bounding_box(image, 0, 0, tf.maximum(scaled, image_size), tf.maximum(scaled, image_size))
    image = tf.image.crop_to_bounding_box(image, oy, ox, image_size, image_size)
    offset = tf.cast(tf.stack([oy, ox, oy, ox]), tf.float32)
    boxes = boxes * factor - offset
    clipped = tf.clip_by_value(boxes, 0.0, float(image_size))
    # Keep an object only if at least half of it (and two pixels each way) stays in view.
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (classes >= 0) & (kept_area >= 0.5 * area) & (clipped[:, 2] - clipped[:, 0] >= 2) \
        & (clipped[:, 3] - clipped[:, 1] >= 2)
    classes = tf.where(keep, classes, -1)
    boxes = tf.where(keep[:, None], clipped, 0.0)
    if flip:
        do_flip = tf.random.stateless_uniform([], flip_seed) < 0.5
        image = tf.cond(do_flip, lambda: tf.image.flip_left_right(image), lambda: image)
        flipped = tf.stack([boxes[:, 0], image_size - boxes[:, 3], boxes[:, 2], image_size - boxes[:, 1]], axis=1)
        boxes = tf.where(do_flip & keep[:, None], flipped, boxes)
    item = dict(item)
    item.update(image=tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), boxes=boxes, classes=classes)
    return item
