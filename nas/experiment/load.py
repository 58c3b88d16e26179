"""Reading config files: an experiment file, or the training sections of a train config or experiment file."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from nas.config import ConfigError, apply_overrides, closest, from_data, read_yaml
from nas.experiment.schema import Experiment
from nas.experiment.train_config import TrainConfig

SECTIONS = ("name", "seed", "search_space", "model", "task", "search", "fidelities", "confirm")


def load_experiment(path: str, overrides: Sequence[str] = ()) -> Experiment:
    """Read and validate an experiment file; errors name the file and the key path."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (name, search_space, model, task, search)")
    raw = apply_overrides(raw, overrides)
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    for section in raw:
        if section not in SECTIONS:
            raise ConfigError(f"{path}: {section}: unknown section{closest(section, SECTIONS)}; "
                              f"sections are {', '.join(SECTIONS)}")
    try:
        experiment = from_data(Experiment, raw, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    experiment = dataclasses.replace(experiment, source=os.path.abspath(path))
    try:
        experiment.search_space.build()
        experiment.search_space.load_seed_genomes(os.path.dirname(os.path.abspath(path)))
    except (ConfigError, ValueError) as err:
        raise ConfigError(f"{path}: search_space.{err}") from None
    return experiment


def load_train_config(path: str | None = None, overrides: Sequence[str] = (), base: dict | None = None,
                      task: str | None = None) -> TrainConfig:
    """Read a train config (or the ``model``/``task`` sections of an experiment file) with overrides.

    ``base`` holds defaults the file and overrides refine (e.g. a model id's
    scaling); ``task`` names the task when the file does not.
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
                data[key] = {**data.get(key, {}), **(raw[key] or {})}
        unknown = [k for k in raw if k not in SECTIONS]
        if unknown:
            raise ConfigError(f"{where}{unknown[0]}: unknown section{closest(unknown[0], ['model', 'task'])}")
    if task:
        data["task"] = {**(data.get("task") or {}), "name": task}
    data = apply_overrides(data, overrides)
    try:
        return from_data(TrainConfig, data, "")
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None
