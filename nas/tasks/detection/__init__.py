"""The detection proxy task: a RetinaNet head on the decoded backbone, scored by COCO AP.

Importing this package registers the task as ``detection`` without importing
TensorFlow; training loads it on first use.
"""

from __future__ import annotations

import os

from nas.tasks.registry import register_task
from nas.tasks.base import DataError, DataSummary, Task
from nas.tasks.detection.config import DetectionConfig


class DetectionTask(Task):
    """COCO-format detection (the embedded shapes dataset by default); metrics from pycocotools."""

    name = "detection"
    config_class = DetectionConfig
    metrics = {"AP": "maximize", "AP50": "maximize", "AP75": "maximize", "APs": "maximize",
               "APm": "maximize", "APl": "maximize", "loss": "minimize"}
    default_objective = "AP"

    def prepare_data(self, config, progress=False):
        from nas.tasks.detection.dataset import prepare_data

        train, val = prepare_data(config.data, progress)
        if config.data.cache:
            from nas.tasks.detection.pixel_cache import build_image_cache

            # Once per study, before any trial: trials then read pixels instead of decoding them.
            for split in (train, val):
                build_image_cache(split, config.data.image_size, progress)
        return DataSummary(train.num_classes, f"train {train.summary()}; val {val.summary()}", len(train))

    def train_and_evaluate(self, genome, train_config, report=None, *, out_dir=None, progress=False):
        from nas.tasks.detection.train import train_and_evaluate

        return train_and_evaluate(genome, train_config, report, out_dir=out_dir, progress=progress)

    def evaluate_on(self, train_config, split):
        data = train_config.task.data
        return [f"task.data.val_annotations={data.path(split, 'annotations')}",
                f"task.data.val_images={data.path(split, 'images')}"]

    def check_data_layout(self, config):
        data = config.data
        root = os.path.normpath(data.resolved_root)
        # The splits training reads (val is the test split's files after train --evaluate-on test).
        needed = [(data.path(split, "annotations"), os.path.isfile, "") for split in ("train", "val")]
        needed += [(data.path(split, "images"), os.path.isdir, "/") for split in ("train", "val")]
        for path, exists, slash in needed:
            if exists(path):
                continue
            path = os.path.normpath(path)
            # A path --set elsewhere is shown whole; one inside the folder by its name there.
            shown = os.path.relpath(path, root) if path.startswith(root + os.sep) else path
            raise DataError(f"{root}: no {shown}{slash} (a COCO-format folder holds instances_train.json, "
                            "instances_val.json, train/ and val/, and instances_test.json and test/ to score a "
                            "held-out split); write one from a VOC or YOLO folder SRC with "
                            "spinenas data import voc|yolo SRC --out DIR")

    def add_commands(self, subparsers, *, load_train_config):
        from nas.tasks.detection.commands import data, evaluate

        evaluate.add_parser(subparsers)
        data.add_parser(subparsers, load_train_config=load_train_config)

    def build_model(self, backbone, train_config, num_classes):
        from nas.tasks.detection.head import build_detector

        return build_detector(backbone, num_classes, train_config.task.head)

    def head_kernels(self, genome, train_config, num_classes, input_size):
        from nas.tasks.detection.latency import retinanet_head_kernels

        head, evaluation = train_config.task.head, train_config.task.evaluation
        return retinanet_head_kernels(
            num_classes=num_classes, input_size=input_size, min_level=genome.min_level, max_level=genome.max_level,
            in_channels=train_config.model.endpoints_num_filters, num_convs=head.num_convs,
            num_filters=head.num_filters, num_anchors=head.num_anchors, separable=head.separable,
            activation=train_config.model.activation, pre_nms_top_k=evaluation.pre_nms_top_k,
            max_detections=evaluation.max_detections)

    def kernel_builders(self, train_config):
        from nas.tasks.detection.latency import postprocess_builder

        return {"detect": postprocess_builder(train_config)}

    def minibatch(self, train_config, batch_size, seed):
        from nas.tasks.detection.batch import minibatch

        return minibatch(train_config, batch_size, seed)

    def loss_fn(self, genome, train_config, num_classes):
        from nas.tasks.detection.batch import loss_fn

        return loss_fn(genome, train_config, num_classes)

    def head_cost(self, genome, train_config, num_classes, input_size=None):
        from nas.tasks.detection.cost import retinanet_head_cost

        head = train_config.task.head
        return retinanet_head_cost(
            num_classes=num_classes, input_size=input_size or train_config.task.data.image_size,
            min_level=genome.min_level,
            max_level=genome.max_level, in_channels=train_config.model.endpoints_num_filters,
            num_convs=head.num_convs, num_filters=head.num_filters, num_anchors=head.num_anchors,
            separable=head.separable)

    def inference_function(self, model, train_config, num_classes):
        from nas.tasks.detection.deploy import detection_inference

        return detection_inference(model, train_config, num_classes)


register_task(DetectionTask())
