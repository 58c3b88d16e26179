"""Train a decoded genome as an image classifier and score it by top-1 / top-5 accuracy.

Example:
    >>> from spinenet import SPINENET_49
    >>> from nas.experiment import load_train_config
    >>> config = load_train_config(task="classification")
    >>> metrics = train_and_evaluate(SPINENET_49, config)  # doctest: +SKIP
    >>> metrics["top1"]  # doctest: +SKIP
    0.82
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras

from nas.tasks.base import Report
from nas.tasks.classification.config import TrainingConfig
from nas.tasks.classification.data import ImageFolderSplit, make_dataset
from nas.tasks.classification.dataset import prepare_data
from nas.tasks.classification.head import build_classifier, cross_entropy, top_k_hits
from nas.tasks.training import (WarmupDecay, apply_gradients, compile_step, epoch_batches, precision_policy,
                                resolve_precision, scale_loss, train_epochs, unscale_gradients, write_outputs,
                                wrap_optimizer)
from search_spaces.genome import Genome
from spinenet.decoder import decode


def train_and_evaluate(genome: Genome, config, report: Optional[Report] = None, *, out_dir: Optional[str] = None,
                       progress: bool = False,
                       data: Optional[tuple[ImageFolderSplit, ImageFolderSplit]] = None) -> dict:
    """:func:`_train_and_evaluate` under ``task.training.precision``'s dtype policy (reset afterwards)."""
    precision = resolve_precision(config.task.training.precision)
    with precision_policy(precision):
        result = _train_and_evaluate(genome, config, report, out_dir=out_dir, progress=progress, data=data)
    return {**result, "precision": precision}


def _train_and_evaluate(genome: Genome, config, report: Optional[Report] = None, *, out_dir: Optional[str] = None,
                        progress: bool = False,
                        data: Optional[tuple[ImageFolderSplit, ImageFolderSplit]] = None) -> dict:
    """Train ``genome`` on the classification task of ``config`` (a :class:`nas.experiment.TrainConfig`).

    ``report(step, metrics)`` is called after every evaluation during training
    (each epoch, or every ``report_every_steps``); it may raise (for example
    ``optuna.TrialPruned``) to stop. Returns the final validation ``top1``,
    ``top5`` (top-min(5, classes): 1.0 with five classes or fewer) and ``loss``
    (validation cross-entropy without label smoothing), with ``train_loss``,
    ``steps``, ``params``, throughput, ``timing`` and ``history``. Raises
    :class:`TrainingDiverged` on a NaN or infinite loss.
    """
    started = time.perf_counter()
    timing = {}
    task, training = config.task, config.task.training
    tf_keras.utils.set_random_seed(training.seed)
    train_split, val_split = data or prepare_data(task.data, progress)
    size = task.data.image_size
    train_ds = make_dataset(train_split, image_size=size, batch_size=training.batch_size, training=True,
                            crop_area=task.data.crop_area, flip=task.data.flip, seed=training.seed)
    val_ds = make_dataset(val_split, image_size=size, batch_size=task.evaluation.batch_size, training=False)
    timing["data"] = time.perf_counter() - started

    mark = time.perf_counter()
    strategy = tf.distribute.MirroredStrategy() if training.strategy == "mirrored" else None

    def scope():
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
        backbone = decode(genome, input_shape=(size, size, 3), norm_momentum=training.norm_momentum,
                          **config.model.decode_kwargs())
        model = build_classifier(backbone, train_split.num_classes, task.head)
    steps_per_epoch = len(train_split) // training.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {training.batch_size} is larger than the {len(train_split)} training images")
    total_steps = steps_per_epoch * training.epochs
    schedule = WarmupDecay(training.learning_rate, total_steps, min(training.warmup_steps, total_steps),
                              training.schedule, training.step_boundaries, training.step_factor)
    with scope():
        optimizer = wrap_optimizer(tf_keras.optimizers.SGD(learning_rate=schedule, momentum=training.momentum),
                                   tf_keras.mixed_precision.global_policy().name, model.trainable_variables)
    train_step = _make_train_step(model, optimizer, task.loss.label_smoothing, training, strategy)
    train_ds = epoch_batches(train_ds, training.epochs, strategy)
    eval_step = _make_eval_step(model)
    timing["build"] = time.perf_counter() - mark

    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tensorboard")) if out_dir else None
    history = []
    # The last epoch's training means: the weights move during an epoch, so these trail the validation scores.
    step, metrics, train_scores = train_epochs(
        lambda batch: train_step(*batch), train_ds, training, steps_per_epoch,
        evaluate=lambda: _evaluate(eval_step, val_ds), every_epoch=task.evaluation.every_epoch,
        summarise=lambda means: {"train_loss": means["loss"], "train_top1": means["top1"]}, report=report,
        writer=writer, history=history, timing=timing, progress=progress, schedule=schedule)
    if writer is not None:
        writer.close()  # flush the event file now, not whenever the writer is collected
    timing["total"] = time.perf_counter() - started
    # Whatever no phase above measured (reporting, Python between steps): a large share is worth a look.
    timing["other"] = timing["total"] - sum(v for k, v in timing.items() if k != "total")
    result = {
        **metrics,
        **train_scores,
        "steps": step,
        "epochs": training.epochs,
        "num_classes": train_split.num_classes,
        "params": int(model.count_params()),
        "backbone_params": int(backbone.count_params()),
        "train_images_per_s": (step - 1) * training.batch_size / max(timing["train"], 1e-9),
        "wall_time_s": timing["total"],
        "timing": timing,
        "history": history,
    }
    if out_dir:
        write_outputs(out_dir, genome, config, model, result)
    return result


def _make_train_step(model, optimizer, label_smoothing: float, training: TrainingConfig, strategy=None):
    decayed = [v for v in model.trainable_variables if "kernel" in v.name]
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            class_loss = tf.reduce_mean(cross_entropy(logits, labels, label_smoothing))
            decay = training.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in decayed])
            loss = class_loss + decay
            # apply_gradients sums the replicas' gradients, so each contributes its share.
            share = scale_loss(loss / replicas, optimizer)
        grads = unscale_gradients(tape.gradient(share, model.trainable_variables), optimizer)
        apply_gradients(optimizer, grads, model.trainable_variables, training.gradient_clip_norm)
        accuracy = tf.reduce_mean(top_k_hits(logits, labels, 1))
        return {"loss": loss, "class_loss": class_loss, "top1": accuracy}

    return compile_step(replica_step, strategy, training.jit_compile)


def _make_eval_step(model):
    @tf.function
    def eval_step(images, labels):
        logits = model(images, training=False)
        # Plain cross-entropy, so the loss compares across label-smoothing settings.
        return (tf.reduce_sum(cross_entropy(logits, labels)), tf.reduce_sum(top_k_hits(logits, labels, 1)),
                tf.reduce_sum(top_k_hits(logits, labels, 5)))

    return eval_step


def _evaluate(eval_step, val_ds) -> dict:
    totals, count = np.zeros(3), 0
    # One trace for every batch size, the last smaller batch included.
    eval_step = eval_step.get_concrete_function(*val_ds.element_spec)
    for images, labels in val_ds:
        totals += [float(v) for v in eval_step(images, labels)]
        count += int(labels.shape[0])
    loss, top1, top5 = totals / max(count, 1)
    return {"top1": float(top1), "top5": float(top5), "loss": float(loss)}
