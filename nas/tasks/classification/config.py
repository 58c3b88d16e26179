"""Settings of the classification proxy task (the ``task`` section of a config file)."""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional, Union

from nas.config import ConfigError
from nas.tasks import training_config
from nas.tasks.generated import check_source, resolved_root


# len(shapes.CLASSES), kept here so reading a config never imports the generator (a test checks they agree).
SHAPE_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    """Generate the embedded shapes dataset (10 classes: size x shape) when it is not there yet."""

    train: int = 1000
    val: int = 200
    seed: int = 0

    def __post_init__(self):
        # Fewer training images than classes would leave a class folder empty.
        if self.train < SHAPE_CLASSES:
            raise ConfigError(f"train: need at least {SHAPE_CLASSES} images (one per class), got {self.train}")
        if self.val < 1:
            raise ConfigError(f"val: need at least one image, got {self.val}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the image folders live and how images are prepared.

    ``root`` holds ``train/<class>/*`` and ``val/<class>/*`` (JPEG, PNG, BMP or
    GIF). With ``root`` null the generated shapes dataset lives in a folder
    named after its settings under ``runs/data/``, so changed settings never
    reuse a stale dataset. Images are resized so the short side is
    ``image_size`` and cropped to a square: centred for validation, at a random
    place and scale (a fraction ``crop_area`` of the short side's square,
    aspect kept) for training, then flipped left-right at random if ``flip``.
    """

    root: Optional[str] = None
    image_size: int = 128
    generate_shapes: Optional[ShapesConfig] = ShapesConfig()
    crop_area: tuple[float, float] = (0.75, 1.0)
    flip: bool = True

    def __post_init__(self):
        if self.image_size < 32:
            raise ConfigError(f"image_size: must be at least 32, got {self.image_size}")
        low, high = self.crop_area
        if not 0 < low <= high <= 1:
            raise ConfigError(f"crop_area: need 0 < min <= max <= 1, got {list(self.crop_area)}")
        check_source(self.root, self.generate_shapes, "where are your train/ and val/ folders?")

    @property
    def resolved_root(self) -> str:
        """``root``, or the generated dataset's folder when ``root`` is null."""
        return resolved_root(self.root, "classes-shapes", self.image_size, self.generate_shapes)

    def split_dir(self, split: str) -> str:
        """The image folder of ``split`` (``train`` or ``val``)."""
        return os.path.join(self.resolved_root, split)


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Pool the feature pyramid into one vector, then a linear classifier.

    ``projection_filters`` > 0 adds a 1x1 conv + batch norm + activation on the
    averaged map before pooling (the reference code's optional embedding);
    0 leaves it out.
    """

    dropout: float = 0.0
    projection_filters: int = 0

    def __post_init__(self):
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.projection_filters < 0:
            raise ConfigError(f"projection_filters: must be 0 (none) or positive, got {self.projection_filters}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Softmax cross-entropy; ``label_smoothing`` 0.1 as SpineNet's classification training used."""

    label_smoothing: float = 0.1

    def __post_init__(self):
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing: must be in [0, 1), got {self.label_smoothing}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig(training_config.TrainingConfig):
    """Optimisation: SGD with momentum, linear warm-up, then cosine or step decay (classification defaults)."""

    learning_rate: float = 0.05
    warmup_steps: int = 50
    # Batch-norm moving-average momentum of the whole model. The decoder's 0.99 needs about 460 steps
    # to forget its initial statistics; a proxy run has a few hundred, so evaluation would see stale ones.
    norm_momentum: float = 0.9

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.norm_momentum < 1:
            raise ConfigError(f"norm_momentum: must be in [0, 1), got {self.norm_momentum}")


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """Validation: batch size, and whether to evaluate (and report) after every epoch."""

    batch_size: int = 64
    # Evaluate after every epoch too (for a pruner's intermediate values), or only at the end. auto, as
    # for detection: every epoch only when someone listens (a search with a pruner); the final
    # evaluation is always on the whole validation split.
    every_epoch: Union[bool, Literal["auto"]] = "auto"

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be positive, got {self.batch_size}")


@dataclasses.dataclass(frozen=True)
class ClassificationConfig:
    """The classification proxy task: data, head, loss, training and evaluation.

    The defaults are the CPU proxy: 128x128 generated shapes (10 classes),
    8 epochs of 1,000 images (500 steps of 16), keeping the paper's label smoothing 0.1 and
    cosine schedule for ImageNet.
    """

    name: str = "classification"  # the registry checks it when the file is read
    data: DataConfig = DataConfig()
    head: HeadConfig = HeadConfig()
    loss: LossConfig = LossConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
