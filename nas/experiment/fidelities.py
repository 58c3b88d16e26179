"""Fidelities: named overrides of the model and task sections that ``spinenas fidelity`` trains genomes at.

An experiment's ``fidelities`` section maps each name to ``{dotted.key: value}``
overrides, cheapest first, plus ``reference: NAME`` (default: the last, most
expensive). Each override goes through the same checked path as ``--set``.

Examples:
    >>> from nas.experiment.train_config import ModelConfig, TrainConfig
    >>> base = TrainConfig()
    >>> configs = fidelity_configs({"short": {"model": {"block_repeats": 2}}}, base.model, base.task)
    >>> configs["short"].model.block_repeats
    2
"""

from __future__ import annotations

import json

from nas.config import ConfigError, apply_overrides, closest, from_data, to_data
from nas.experiment.train_config import TrainConfig

# Names inside the ``fidelities`` section that are settings, not fidelities.
FIDELITY_REFERENCE_KEY = "reference"


def fidelity_configs(fidelities: dict, model, task) -> dict:
    """Each fidelity's :class:`TrainConfig` (``model`` and ``task`` with its overrides), in file order.

    Without fidelities there is one, ``proxy``: the sections as they are.
    """
    entries = {k: v for k, v in fidelities.items() if k != FIDELITY_REFERENCE_KEY}
    if not entries:
        if fidelities:
            raise ConfigError("fidelities: lists no fidelity, only the reference")
        entries = {"proxy": {}}
    base = {"model": to_data(model), "task": to_data(task)}
    configs = {}
    for name, overrides in entries.items():
        where = f"fidelities.{name}"
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigError(f"fidelities: name {name!r}: use letters, digits, '-' or '_'")
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: expected a mapping of overrides such as "
                              f"{{task.training.epochs: 3}}, got {overrides!r}")
        overrides = _flatten(overrides)
        for key in overrides:
            if not isinstance(key, str) or key.split(".", 1)[0] not in ("model", "task") or "." not in key:
                raise ConfigError(f"{where}.{key}: a fidelity overrides model.* or task.* keys only "
                                  "(the space, search and seed are the experiment's)")
        # JSON is YAML, so every value goes through the same checked path as --set.
        data = apply_overrides(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
        try:
            configs[name] = from_data(TrainConfig, data, "")
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    reference = fidelities.get(FIDELITY_REFERENCE_KEY)
    if reference is not None and reference not in configs:
        raise ConfigError(f"fidelities.{FIDELITY_REFERENCE_KEY}: {reference!r} is not a fidelity"
                          f"{closest(str(reference), configs)}; fidelities are {', '.join(configs)}")
    return configs


def reference_fidelity(fidelities: dict, configs: dict) -> str:
    """The fidelity others are ranked against: ``fidelities.reference``, else the last of ``configs``."""
    return fidelities.get(FIDELITY_REFERENCE_KEY) or list(configs)[-1]


def _flatten(overrides: dict, prefix: str = "") -> dict:
    """``{task: {training: {epochs: 3}}}`` as ``{"task.training.epochs": 3}`` (what ``--set`` nesting makes)."""
    flat = {}
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat
