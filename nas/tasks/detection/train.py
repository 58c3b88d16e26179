"""Train a decoded genome as a RetinaNet detector and score it by COCO AP.

The loop is :func:`nas.tasks.training.train_genome`; this module supplies the
detection data, the detector, its loss and the COCO evaluation.

Examples:
    >>> from spinenet import SPINENET_49
    >>> from nas.experiment import load_train_config
    >>> metrics = train_and_evaluate(SPINENET_49, load_train_config())  # doctest: +SKIP
    >>> metrics["AP50"]  # doctest: +SKIP
    0.71
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from nas.tasks.base import Report
from nas.tasks.detection.anchors import generate_anchors, label_anchors
from nas.tasks.detection.annotations import CocoSplit
from nas.tasks.detection.dataset import prepare_data
from nas.tasks.detection.evaluate import coco_metrics, detect, make_postprocess
from nas.tasks.detection.head import build_detector, detection_losses
from nas.tasks.detection.pipeline import make_dataset
from nas.tasks.training import TaskData, TaskLoss, TaskTraining, train_genome
from search_spaces.genome import Genome
from spinenet.decoder import decode


def train_and_evaluate(genome: Genome, config, report: Optional[Report] = None, *, out_dir: Optional[str] = None,
                       progress: bool = False, data: Optional[tuple[CocoSplit, CocoSplit]] = None) -> dict:
    """Train ``genome`` on the detection task of ``config`` (a :class:`nas.experiment.TrainConfig`).

    :func:`nas.tasks.training.train_genome` with :func:`detection_training`:
    returns the final COCO metrics on the validation split (``AP``, ``AP50``,
    ``AP75``, ``APs``, ``APm``, ``APl``) with the last epoch's mean training
    ``loss`` and what every task returns. ``data`` (train, val) skips reading
    the splits again.
    """
    return train_genome(genome, config, detection_training(genome, config, data, progress), report,
                        out_dir=out_dir, progress=progress)


def detection_training(genome: Genome, config, data: Optional[tuple[CocoSplit, CocoSplit]] = None,
                       progress: bool = False) -> TaskTraining:
    """What detection brings to the shared loop: COCO-format data, the RetinaNet, its losses and COCO AP."""
    task = config.task
    size = task.data.image_size
    anchors = generate_anchors(size, genome.min_level, genome.max_level, task.head.num_scales,
                               task.head.aspect_ratios, task.head.anchor_size)

    def read_data() -> TaskData:
        train_split, val_split = data or prepare_data(task.data, progress)
        train_ds = make_dataset(train_split, image_size=size, batch_size=task.training.batch_size, training=True,
                                max_instances=task.data.max_instances, scale_jitter=task.data.scale_jitter,
                                flip=task.data.flip, seed=task.training.seed, disk_cache=task.data.cache)
        val_ds = make_dataset(val_split, image_size=size, batch_size=task.evaluation.batch_size, training=False,
                              max_instances=task.data.max_instances, disk_cache=task.data.cache)
        return TaskData(train_ds, (val_split, val_ds), len(train_split), train_split.num_classes)

    def build_model(num_classes: int):
        backbone = decode(genome, input_shape=(size, size, 3), **config.model.decode_kwargs())
        return build_detector(backbone, num_classes, task.head), backbone

    def evaluator(model, val):
        val_split, val_ds = val
        postprocess = make_postprocess(model, anchors, task.evaluation)
        return lambda: coco_metrics(val_split, detect(postprocess, val_ds, val_split))

    return TaskTraining(data=read_data, build_model=build_model, loss=detection_loss(tf.constant(anchors), task),
                        evaluator=evaluator, summarise=lambda means: {"loss": means["loss"]})


def detection_loss(anchors, task) -> TaskLoss:
    """Focal class loss plus weighted Huber box loss of a batch of images and their targets' boxes and classes."""

    def loss(model, images, targets):
        labels, box_targets = label_anchors(anchors, targets["boxes"], targets["classes"], task.loss.positive_iou,
                                            task.loss.negative_iou)
        class_loss, box_loss = detection_losses(model(images, training=True), labels, box_targets, task.loss)
        return {"loss": class_loss + task.loss.box_loss_weight * box_loss, "class_loss": class_loss,
                "box_loss": box_loss}

    return loss
