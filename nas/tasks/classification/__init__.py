"""The classification proxy task: the decoded backbone, a pooled feature pyramid and a linear classifier.

Importing this package registers the task as ``classification`` without
importing TensorFlow; training loads it on first use. Data is an image
folder (``root/train/<class>/*``, ``root/val/<class>/*``), by default the
embedded generated shapes (ten classes of size x shape).
"""

from __future__ import annotations

import os

from nas.tasks.registry import register_task
from nas.tasks.base import DataError, DataSummary, Task
from nas.tasks.classification.config import ClassificationConfig


class ClassificationTask(Task):
    """Image classification scored by validation top-1 / top-5 accuracy and cross-entropy."""

    name = "classification"
    config_class = ClassificationConfig
    # top5 is top-min(5, classes): with five classes or fewer it is 1.0 by construction.
    metrics = {"top1": "maximize", "top5": "maximize", "loss": "minimize"}
    default_objective = "top1"

    def prepare_data(self, config, progress=False):
        from nas.tasks.classification.dataset import prepare_data

        train, val = prepare_data(config.data, progress)
        return DataSummary(train.num_classes, f"train {train.summary()}; val {val.summary()}", len(train))

    def check_data_layout(self, config):
        root = os.path.normpath(config.data.resolved_root)
        for split in ("train", "val"):
            if not os.path.isdir(config.data.split_dir(split)):
                raise DataError(f"{root}: no {split}/ (an image-classification folder holds train/<class>/ and "
                                "val/<class>/, one folder of images per class)")

    def train_and_evaluate(self, genome, train_config, report=None, *, out_dir=None, progress=False):
        from nas.tasks.classification.train import train_and_evaluate

        return train_and_evaluate(genome, train_config, report, out_dir=out_dir, progress=progress)

    def build_model(self, backbone, train_config, num_classes):
        from nas.tasks.classification.head import build_classifier

        return build_classifier(backbone, num_classes, train_config.task.head)

    def minibatch(self, train_config, batch_size, seed):
        import dataclasses

        import numpy as np

        from nas.tasks.classification.data import make_dataset
        from nas.tasks.classification.dataset import prepare_data

        train, _ = prepare_data(train_config.task.data)
        picked = sorted(np.random.default_rng(seed).choice(len(train), min(batch_size, len(train)), replace=False))
        subset = dataclasses.replace(train, paths=[train.paths[i] for i in picked],
                                     labels=[train.labels[i] for i in picked])
        ds = make_dataset(subset, image_size=train_config.task.data.image_size, batch_size=len(picked),
                          training=False)
        images, labels = next(iter(ds))
        return images.numpy(), labels.numpy()

    def loss_fn(self, genome, train_config, num_classes):
        import tensorflow as tf

        from nas.tasks.classification.head import cross_entropy

        return lambda logits, labels: tf.reduce_mean(cross_entropy(logits, tf.constant(labels)))

    def head_kernels(self, genome, train_config, num_classes, input_size):
        from nas.tasks.classification.latency import classification_head_kernels

        return classification_head_kernels(
            num_classes=num_classes, input_size=input_size, min_level=genome.min_level, max_level=genome.max_level,
            in_channels=train_config.model.endpoints_num_filters,
            projection_filters=train_config.task.head.projection_filters, activation=train_config.model.activation)

    def head_cost(self, genome, train_config, num_classes, input_size=None):
        from nas.tasks.classification.cost import classification_head_cost

        return classification_head_cost(
            num_classes=num_classes, input_size=input_size or train_config.task.data.image_size,
            min_level=genome.min_level, in_channels=train_config.model.endpoints_num_filters,
            projection_filters=train_config.task.head.projection_filters)

    def inference_function(self, model, train_config, num_classes):
        from nas.tasks.classification.deploy import classification_inference

        return classification_inference(model, train_config, num_classes)


register_task(ClassificationTask())
