"""Train a decoded genome as a RetinaNet detector and score it by COCO AP.

Example:
    >>> from spinenet import SPINENET_49
    >>> from nas.experiment import load_train_config
    >>> metrics = train_and_evaluate(SPINENET_49, load_train_config())  # doctest: +SKIP
    >>> metrics["AP50"]  # doctest: +SKIP
    0.71
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Optional

import tensorflow as tf
import tf_keras

from nas.tasks.base import Report
from nas.tasks.detection.data import CocoSplit, make_dataset
from nas.tasks.detection.dataset import prepare_data
from nas.tasks.detection.anchors import generate_anchors, label_anchors
from nas.tasks.detection.config import TrainingConfig
from nas.tasks.detection.evaluate import coco_metrics, detect, make_postprocess
from nas.tasks.detection.head import build_detector, detection_losses
from nas.tasks.training import (WarmupDecay, apply_gradients, compile_step, epoch_batches, precision_policy,
                                resolve_precision, scale_loss, train_epochs, unscale_gradients, write_outputs,
                                wrap_optimizer)
from search_spaces.genome import Genome
from spinenet.decoder import decode

def _decay_variables(model) -> list:
    return [v for v in model.trainable_variables if "kernel" in v.name]


def train_and_evaluate(genome: Genome, config, report: Optional[Report] = None, *, out_dir: Optional[str] = None,
                       progress: bool = False, data: Optional[tuple[CocoSplit, CocoSplit]] = None) -> dict:
    """Train ``genome`` on the detection task of ``config`` (a :class:`nas.experiment.TrainConfig`).

    ``report(step, metrics)`` is called after every evaluation during training
    (each epoch, or every ``report_every_steps``); it may raise (for example
    ``optuna.TrialPruned``) to stop. Returns the final COCO metrics on the
    validation split with ``loss``, ``steps``, ``params``, throughput and a
    ``timing`` breakdown. Raises :class:`TrainingDiverged` on a NaN loss.
    """
    precision = resolve_precision(config.task.training.precision)
    # The policy decides each layer's dtype when the model is built; reset afterwards so a warm
    # process's next trial (or the caller) never inherits it.
    with precision_policy(precision):
        result = _train_and_evaluate(genome, config, report, out_dir, progress, data)
    result["precision"] = precision
    if out_dir:
        write_outputs(out_dir, genome, config, result.pop("_model"), result)
    else:
        result.pop("_model")
    return result


def _train_and_evaluate(genome, config, report, out_dir, progress, data) -> dict:
    started = time.perf_counter()
    timing = {}
    task, training = config.task, config.task.training
    tf_keras.utils.set_random_seed(training.seed)
    train_split, val_split = data or prepare_data(task.data, progress)
    size = task.data.image_size
    train_ds = make_dataset(train_split, image_size=size, batch_size=training.batch_size, training=True,
                            max_instances=task.data.max_instances, scale_jitter=task.data.scale_jitter,
                            flip=task.data.flip, seed=training.seed, disk_cache=task.data.cache)
    val_ds = make_dataset(val_split, image_size=size, batch_size=task.evaluation.batch_size, training=False,
                          max_instances=task.data.max_instances, disk_cache=task.data.cache)
    timing["data"] = time.perf_counter() - started

    mark = time.perf_counter()
    strategy = tf.distribute.MirroredStrategy() if training.strategy == "mirrored" else None
    def scope():
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
        backbone = decode(genome, input_shape=(size, size, 3), **config.model.decode_kwargs())
        model = build_detector(backbone, train_split.num_classes, task.head)
    anchors = generate_anchors(size, genome.min_level, genome.max_level, task.head.num_scales,
                               task.head.aspect_ratios, task.head.anchor_size)
    steps_per_epoch = len(train_split) // training.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {training.batch_size} is larger than the {len(train_split)} training images")
    total_steps = steps_per_epoch * training.epochs
    schedule = WarmupDecay(training.learning_rate, total_steps, min(training.warmup_steps, total_steps),
                           training.schedule, training.step_boundaries, training.step_factor)
    with scope():
        # The legacy SGD applies momentum with one fused kernel per variable (ResourceApplyKerasMomentum,
        # the same update rule); the new one emits ~11 ops per variable, a third of the train step's
        # graph, which costs tracing time and per-step executor overhead.
        optimizer = wrap_optimizer(tf_keras.optimizers.legacy.SGD(learning_rate=schedule, momentum=training.momentum),
                                   tf_keras.mixed_precision.global_policy().name, model.trainable_variables)
    train_step = _make_train_step(model, optimizer, tf.constant(anchors), task, training, strategy)
    train_ds = epoch_batches(train_ds, training.epochs, strategy)
    postprocess = make_postprocess(model, anchors, task.evaluation)
    timing["build"] = time.perf_counter() - mark

    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tensorboard")) if out_dir else None
    every_epoch = task.evaluation.every_epoch
    if every_epoch == "auto":
        every_epoch = report is not None  # nobody reads intermediate values otherwise
    history = []
    step, metrics, scores = train_epochs(
        lambda batch: train_step(batch[0], batch[1]["boxes"], batch[1]["classes"]), train_ds, training,
        steps_per_epoch, evaluate=lambda: coco_metrics(val_split, detect(postprocess, val_ds, val_split)),
        every_epoch=every_epoch, summarise=lambda means: {"loss": means["loss"]}, report=report, writer=writer,
        history=history, timing=timing, progress=progress, schedule=schedule)
    if writer is not None:
        writer.close()  # flush the event file now, not whenever the writer is collected
    timing["total"] = time.perf_counter() - started
    # Whatever no phase above measured (reporting, Python between steps): a large share is worth a look.
    timing["other"] = timing["total"] - sum(v for k, v in timing.items() if k != "total")
    result = {
        **metrics,
        **scores,
        "steps": step,
        "epochs": training.epochs,
        "params": int(model.count_params()),
        "backbone_params": int(backbone.count_params()),
        "train_images_per_s": (step - 1) * training.batch_size / max(timing["train"], 1e-9),
        "wall_time_s": timing["total"],
        "timing": timing,
        "history": history,
        "_model": model,
    }
    return result


def _make_train_step(model, optimizer, anchors, task, training: TrainingConfig, strategy=None):
    decayed = _decay_variables(model)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1

    def replica_step(images, boxes, classes):
        labels, box_targets = label_anchors(anchors, boxes, classes, task.loss.positive_iou, task.loss.negative_iou)
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            class_loss, box_loss = detection_losses(outputs, labels, box_targets, task.loss)
            decay = training.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in decayed])
            loss = class_loss + task.loss.box_loss_weight * box_loss + decay
            # apply_gradients sums the replicas' gradients, so each contributes its share.
            share = scale_loss(loss / replicas, optimizer)
        grads = unscale_gradients(tape.gradient(share, model.trainable_variables), optimizer)
        apply_gradients(optimizer, grads, model.trainable_variables, training.gradient_clip_norm)
        return {"loss": loss, "class_loss": class_loss, "box_loss": box_loss}

    return compile_step(replica_step, strategy, training.jit_compile, autograph=False)


