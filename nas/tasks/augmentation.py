"""Training examples shuffled and augmented, each with its own random seed drawn from the training seed."""

from __future__ import annotations

from typing import Callable


def augmented_per_example(ds, shuffle_buffer: int, seed: int, augment: Callable):
    """``ds`` reshuffled every epoch and mapped by ``augment(example, example_seed)``.

    ``example_seed`` is a ``[2]`` int64 tensor for the stateless random ops,
    drawn per example from ``seed`` (new draws every epoch), so the batches
    of a seed are the same however many threads the map runs on.
    """
    import tensorflow as tf

    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # A shared random op would give the parallel map's threads its numbers in whatever order they ran, and a
    # seed would not fix a trial: each example brings its own draw instead.
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip(ds, draws).map(lambda example, draw: augment(example, tf.stack([draw, seed])),
                                              num_parallel_calls=tf.data.AUTOTUNE)
