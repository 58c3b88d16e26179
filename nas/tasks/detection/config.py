"""Settings of the detection proxy task (the ``task`` section of a config file)."""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional, Union

from nas.config import ConfigError
from nas.tasks import training_config
from nas.tasks.generated import check_source, resolved_root


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    """Generate the embedded shapes dataset into ``data.root`` when it is not there yet."""

    train: int = 1500
    val: int = 200
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the COCO-format data lives and how images are prepared.

    Paths left null default to ``root/instances_{split}.json`` and ``root/{split}``.
    With ``root`` null the generated shapes dataset lives in a folder named
    after its settings under ``runs/data/``, so changed settings never reuse
    a stale dataset.

    ``categories`` (null: all) lists the category names to keep, or maps old
    names to new ones (several old names may map to one new name, merging
    them). Categories with no usable training annotation are left out of the
    head and reported, unless ``keep_empty_categories``.
    """

    root: Optional[str] = None
    train_annotations: Optional[str] = None
    train_images: Optional[str] = None
    val_annotations: Optional[str] = None
    val_images: Optional[str] = None
    generate_shapes: Optional[ShapesConfig] = ShapesConfig()
    image_size: int = 128
    max_instances: int = 32
    scale_jitter: tuple[float, float] = (0.8, 1.2)
    flip: bool = True
    categories: Union[tuple[str, ...], dict, None] = None
    keep_empty_categories: bool = False
    # Decode and resize each image once per dataset and size into a uint8 file beside the annotations
    # (.spinenas-cache/), instead of once per trial; augmentation still runs on the fly.
    cache: bool = True

    def __post_init__(self):
        if isinstance(self.categories, dict):
            bad = [k for k, v in self.categories.items() if not isinstance(k, str) or not isinstance(v, str)]
            if bad:
                raise ConfigError(f"categories.{bad[0]}: expected old name: new name (both strings)")
        if self.categories is not None and not self.categories:
            raise ConfigError("categories: empty; use null for all categories")
        if self.image_size < 32:
            raise ConfigError(f"image_size: must be at least 32, got {self.image_size}")
        low, high = self.scale_jitter
        if not 0 < low <= high:
            raise ConfigError(f"scale_jitter: need 0 < min <= max, got {list(self.scale_jitter)}")
        if self.max_instances < 1:
            raise ConfigError(f"max_instances: must be positive, got {self.max_instances}")
        check_source(self.root, self.generate_shapes, "where is your COCO-format data?")

    @property
    def resolved_root(self) -> str:
        """``root``, or the generated dataset's folder when ``root`` is null."""
        return resolved_root(self.root, "shapes", self.image_size, self.generate_shapes)

    def path(self, split: str, kind: str) -> str:
        """The annotations file (``kind='annotations'``) or image folder of ``split``.

        ``test`` (held out: ``data check`` and ``evaluate --split test`` read it,
        training never does) has no override fields: always
        ``root/instances_test.json`` and ``root/test``.
        """
        explicit = getattr(self, f"{split}_{kind}", None)
        if explicit:
            return explicit
        return os.path.join(self.resolved_root, f"instances_{split}.json" if kind == "annotations" else split)


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """RetinaNet head: shared class and box subnets over the backbone's levels."""

    num_convs: int = 4
    num_filters: int = 64
    num_scales: int = 3
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_size: float = 4.0
    # Depthwise-separable 3x3 convolutions, as the published Mobile SpineNet RetinaNets use.
    separable: bool = False

    def __post_init__(self):
        for name in ("num_filters", "num_scales"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.num_convs < 0:
            raise ConfigError(f"num_convs: must be 0 or more, got {self.num_convs}")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ConfigError(f"aspect_ratios: need positive ratios, got {list(self.aspect_ratios)}")
        if self.anchor_size <= 0:
            raise ConfigError(f"anchor_size: must be positive, got {self.anchor_size}")

    def smallest_anchor(self, min_level: int = 3) -> float:
        """Side in pixels of the smallest anchor, at ``min_level`` (32 with the defaults)."""
        return self.anchor_size * 2**min_level

    @property
    def num_anchors(self) -> int:
        """Anchors per location: scales times aspect ratios."""
        return self.num_scales * len(self.aspect_ratios)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Anchor matching thresholds and loss weights (RetinaNet defaults)."""

    positive_iou: float = 0.5
    negative_iou: float = 0.4
    focal_alpha: float = 0.25
    focal_gamma: float = 1.5
    huber_delta: float = 0.1
    box_loss_weight: float = 50.0

    def __post_init__(self):
        if not 0 < self.negative_iou <= self.positive_iou <= 1:
            raise ConfigError(f"need 0 < negative_iou <= positive_iou <= 1, got {self.negative_iou}, {self.positive_iou}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig(training_config.TrainingConfig):
    """Optimisation: SGD with momentum, linear warm-up, then cosine or step decay (detection defaults)."""


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """Detection post-processing for COCO evaluation."""

    score_threshold: float = 0.05
    nms_iou: float = 0.5
    pre_nms_top_k: int = 1000
    max_detections: int = 100
    batch_size: int = 32
    # Evaluate after every epoch too (for a pruner's intermediate values), or only at the end. auto:
    # every epoch only when someone listens (a search with a pruner); the final evaluation is always
    # on the whole validation split.
    every_epoch: Union[bool, Literal["auto"]] = "auto"


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
    """The detection proxy task: data, head, loss, training and evaluation.

    The defaults are the CPU proxy: 128x128 generated shapes, a 64-wide head,
    8 epochs (the paper: 512x512 COCO, 64-wide head, 5 epochs on TPUs).
    """

    name: str = "detection"  # the registry checks it when the file is read; a subclass task shares this schema
    data: DataConfig = DataConfig()
    head: HeadConfig = HeadConfig()
    loss: LossConfig = LossConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
