"""What one training run reads: the model scaling and the task section (``spinenas train`` and every trial)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from nas.config import ConfigError, Tagged, closest

ACTIVATIONS = ("relu", "swish", "silu", "gelu", "elu", "selu")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """How a genome is decoded: a :class:`spinenet.scaling.Scaling` plus the activation.

    The defaults are the paper's proxy widths.
    """

    filter_size_scale: float = 0.25
    resample_alpha: float = 0.25
    block_repeats: int = 1
    endpoints_num_filters: int = 64
    activation: str = "relu"

    def __post_init__(self):
        from spinenet.scaling import DecodeError

        try:  # the decoder's own checks, so the file fails before any trial does
            self.scaling
        except DecodeError as err:
            raise ConfigError(str(err)) from None
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation: unknown activation {self.activation!r}{closest(self.activation, ACTIVATIONS)}"
                              f"; choose from {', '.join(ACTIVATIONS)}")

    @property
    def scaling(self):
        """The width and depth settings as one :class:`spinenet.scaling.Scaling`."""
        from spinenet.scaling import Scaling

        return Scaling(self.filter_size_scale, self.resample_alpha, self.block_repeats, self.endpoints_num_filters)

    def decode_kwargs(self) -> dict:
        """Keyword arguments for ``spinenet.decode``: the scaling and the activation."""
        return {"scaling": self.scaling, "activation": self.activation}


def _task_schema(name: str) -> type:
    from nas.tasks import get_task

    return get_task(name).config_class


# The ``task`` section: its schema is the one of the task its ``name`` selects.
TaskSection = Annotated[object, Tagged("name", "detection", _task_schema)]


def default_task():
    """The default ``task`` section: the detection task's defaults."""
    return _task_schema("detection")()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What ``spinenas train`` and every trial read: the decode scaling and the task."""

    model: ModelConfig = ModelConfig()
    task: TaskSection = dataclasses.field(default_factory=default_task)
