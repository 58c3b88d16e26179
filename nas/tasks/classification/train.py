"""Train a decoded genome as an image classifier and score it by top-1 / top-5 accuracy.

The loop is :func:`nas.tasks.training.train_genome`; this module supplies the
image folders, the classifier, its loss and the accuracy evaluation.

Examples:
    >>> from spinenet import SPINENET_49
    >>> from nas.experiment import load_train_config
    >>> config = load_train_config(task="classification")
    >>> metrics = train_and_evaluate(SPINENET_49, config)  # doctest: +SKIP
    >>> metrics["top1"]  # doctest: +SKIP
    0.82
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from nas.tasks.base import Report
from nas.tasks.classification.data import ImageFolderSplit, make_dataset
from nas.tasks.classification.dataset import prepare_data
from nas.tasks.classification.head import build_classifier, cross_entropy, top_k_hits
from nas.tasks.training import TaskData, TaskLoss, TaskTraining, train_genome
from search_spaces.genome import Genome
from spinenet.decoder import decode


def train_and_evaluate(genome: Genome, config, report: Optional[Report] = None, *, out_dir: Optional[str] = None,
                       progress: bool = False,
                       data: Optional[tuple[ImageFolderSplit, ImageFolderSplit]] = None) -> dict:
    """Train ``genome`` on the classification task of ``config`` (a :class:`nas.experiment.TrainConfig`).

    :func:`nas.tasks.training.train_genome` with :func:`classification_training`:
    returns the final validation ``top1``, ``top5`` (top-min(5, classes): 1.0
    with five classes or fewer) and ``loss`` (validation cross-entropy without
    label smoothing), with the last epoch's mean ``train_loss`` and
    ``train_top1`` and what every task returns. ``data`` (train, val) skips
    reading the folders again.
    """
    return train_genome(genome, config, classification_training(genome, config, data, progress), report,
                        out_dir=out_dir, progress=progress)


def classification_training(genome: Genome, config, data: Optional[tuple[ImageFolderSplit, ImageFolderSplit]] = None,
                            progress: bool = False) -> TaskTraining:
    """What classification brings to the shared loop: image folders, the classifier, cross-entropy, accuracy."""
    task = config.task
    size = task.data.image_size

    def read_data() -> TaskData:
        train_split, val_split = data or prepare_data(task.data, progress)
        train_ds = make_dataset(train_split, image_size=size, batch_size=task.training.batch_size, training=True,
                                crop_area=task.data.crop_area, flip=task.data.flip, seed=task.training.seed)
        val_ds = make_dataset(val_split, image_size=size, batch_size=task.evaluation.batch_size, training=False)
        return TaskData(train_ds, val_ds, len(train_split), train_split.num_classes)

    def build_model(num_classes: int):
        # norm_momentum is classification's own setting (see its TrainingConfig for why).
        backbone = decode(genome, input_shape=(size, size, 3), norm_momentum=task.training.norm_momentum,
                          **config.model.decode_kwargs())
        return build_classifier(backbone, num_classes, task.head), backbone

    def evaluator(model, val_ds):
        eval_step = _make_eval_step(model)
        return lambda: _evaluate(eval_step, val_ds)

    # The last epoch's training means: the weights move during an epoch, so these trail the validation scores.
    return TaskTraining(data=read_data, build_model=build_model, loss=classification_loss(task.loss.label_smoothing),
                        evaluator=evaluator,
                        summarise=lambda means: {"train_loss": means["loss"], "train_top1": means["top1"]})


def classification_loss(label_smoothing: float) -> TaskLoss:
    """Mean softmax cross-entropy with ``label_smoothing`` of a batch of images and labels, and its top-1."""

    def loss(model, images, labels):
        logits = model(images, training=True)
        class_loss = tf.reduce_mean(cross_entropy(logits, labels, label_smoothing))
        return {"loss": class_loss, "class_loss": class_loss, "top1": tf.reduce_mean(top_k_hits(logits, labels, 1))}

    return loss


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
