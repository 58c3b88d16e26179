"""Schemas of the config files: the model scaling and the task a genome is trained on."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from nas.config import ConfigError, apply_overrides, from_data, read_yaml
from nas.tasks.detection.config import DetectionConfig


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """How a genome is decoded (``spinenet.decode`` settings). Defaults are the paper's proxy."""

    filter_size_scale: float = 0.25
    resample_alpha: float = 0.25
    block_repeats: int = 1
    endpoints_num_filters: int = 64
    activation: str = "relu"

    def __post_init__(self):
        if self.filter_size_scale <= 0 or self.resample_alpha <= 0:
            raise ConfigError("filter_size_scale and resample_alpha must be positive")
        if self.block_repeats < 1 or self.endpoints_num_filters < 1:
            raise ConfigError("block_repeats and endpoints_num_filters must be positive")
        if self.activation not in ("relu", "swish", "silu", "gelu", "elu", "selu"):
            raise ConfigError(f"activation: unknown activation {self.activation!r} (try relu or swish)")

    def decode_kwargs(self) -> dict:
        """Keyword arguments for ``spinenet.decode``."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What ``spinenas train`` reads: the decode scaling and the task."""

    model: ModelConfig = ModelConfig()
    task: DetectionConfig = DetectionConfig()


def load_train_config(path: str | None = None, overrides: Sequence[str] = (), base: dict | None = None) -> TrainConfig:
    """Read a train config (or the ``model``/``task`` sections of an experiment file) with overrides.

    ``base`` holds defaults the file and overrides refine (e.g. a model id's scaling).
    """
    data: dict[str, Any] = {"model": dict(base or {})}
    where = ""
    if path:
        raw = read_yaml(path) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections")
        where = f"{path}: "
        # An experiment file carries search sections too; training needs only these two.
        for key in ("model", "task"):
            if key in raw:
                data[key] = {**data.get(key, {}), **(raw[key] or {})} if key == "model" else raw[key]
        unknown = [k for k in raw if k not in ("model", "task", "name", "seed", "search_space", "search")]
        if unknown:
            from nas.config import _closest

            raise ConfigError(f"{where}{unknown[0]}: unknown section{_closest(unknown[0], ['model', 'task'])}")
    data = apply_overrides(data, overrides)
    try:
        return from_data(TrainConfig, data, "")
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None
