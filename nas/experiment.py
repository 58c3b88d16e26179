"""Schemas of the config files: the model scaling and the task a genome is trained on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Literal, Optional, Sequence

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
        from spinenet.scaling import DecodeError, Scaling

        try:  # the decoder's own checks, so the file fails before any trial does
            Scaling(self.filter_size_scale, self.resample_alpha, self.block_repeats, self.endpoints_num_filters)
        except DecodeError as err:
            raise ConfigError(str(err)) from None
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


METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "loss", "params", "multiply_adds")
# Metrics known before training, from the cost model.
COST_METRICS = ("params", "multiply_adds")


@dataclasses.dataclass(frozen=True)
class SearchSpaceConfig:
    """Settings of :class:`search_spaces.space.ScalePermutedSpace`, plus genomes to evaluate first."""

    min_level: int = 3
    max_level: int = 7
    num_init_blocks: int = 2
    init_block_fn: str = "bottleneck"
    intermediate_levels: tuple[int, ...] = (2, 3, 3, 3, 4, 4, 4, 4, 5, 5)
    level_offsets: tuple[int, ...] = (-1, 0, 1, 2)
    block_fns: tuple[str, ...] = ("bottleneck", "residual")
    parent_window: int = 5
    level_bounds: Optional[tuple[int, int]] = None
    bound_mode: Literal["clamp", "restrict"] = "clamp"
    seed_genomes: tuple[str, ...] = ()
    # Block family and per-block searched options (e.g. mobile: kernel_size, expand_ratio).
    family: str = "spinenet"
    block_options: dict = dataclasses.field(default_factory=dict)

    def build(self):
        """The configured search space."""
        from search_spaces.space import ScalePermutedSpace, SpaceError

        settings = {k: v for k, v in dataclasses.asdict(self).items() if k != "seed_genomes"}
        try:
            return ScalePermutedSpace(**settings)
        except SpaceError as err:
            raise ConfigError(str(err)) from None

    def load_seed_genomes(self, base_dir: str = ".") -> list:
        """The seed genomes: ``spinenet-49`` or paths to genome files (relative to the experiment)."""
        from search_spaces.genome import Genome
        from spinenet.specs import REFERENCE_GENOMES

        genomes = []
        for entry in self.seed_genomes:
            if entry.lower() in REFERENCE_GENOMES:
                genomes.append(REFERENCE_GENOMES[entry.lower()])
            else:
                path = entry if os.path.isabs(entry) else os.path.join(base_dir, entry)
                if not os.path.exists(path):
                    raise ConfigError(f"seed_genomes: {entry!r} is neither a reference genome "
                                      f"({', '.join(REFERENCE_GENOMES)}) nor an existing genome file")
                genomes.append(Genome.load(path))
        return genomes


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """An Optuna sampler by name; ``options`` go to its constructor."""

    name: Literal["tpe", "random", "nsga2", "gp", "cmaes", "evolution"] = "tpe"
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PrunerConfig:
    """An Optuna pruner by name (single-objective studies only); ``options`` go to its constructor."""

    name: Literal["none", "median", "hyperband"] = "none"
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ConstraintsConfig:
    """Budgets checked with the cost model before anything is trained."""

    max_params: Optional[float] = None
    max_multiply_adds: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How Optuna searches: sampler, pruner, budget, objectives, constraints, storage."""

    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    n_trials: int = 20
    timeout: Optional[float] = None
    objectives: tuple[dict, ...] = ({"AP": "maximize"},)
    constraints: ConstraintsConfig = ConstraintsConfig()
    storage: Optional[str] = None
    study_name: Optional[str] = None
    max_retries: int = 1
    heartbeat_interval: int = 30

    def __post_init__(self):
        if self.n_trials < 1:
            raise ConfigError(f"n_trials: must be positive, got {self.n_trials}")
        if not self.objectives:
            raise ConfigError("objectives: need at least one, e.g. [{AP: maximize}]")
        seen = set()
        for i, objective in enumerate(self.objectives):
            if not isinstance(objective, dict) or len(objective) != 1:
                raise ConfigError(f"objectives[{i}]: expected one 'metric: direction' pair, got {objective!r}")
            (metric, direction), = objective.items()
            if metric not in METRICS:
                from nas.config import closest

                raise ConfigError(f"objectives[{i}]: unknown metric {metric!r}{closest(metric, METRICS)}; "
                                  f"choose from {', '.join(METRICS)}")
            if direction not in ("maximize", "minimize"):
                raise ConfigError(f"objectives[{i}]: direction must be maximize or minimize, got {direction!r}")
            if metric in seen:
                raise ConfigError(f"objectives[{i}]: {metric} is listed twice")
            seen.add(metric)
        if self.sampler.name == "evolution" and len(self.objectives) > 1:
            raise ConfigError("sampler: evolution supports one objective; use nsga2 for several")
        if self.pruner.name != "none" and len(self.objectives) > 1:
            raise ConfigError("pruner: Optuna prunes single-objective studies only; set pruner: none")

    @property
    def metric_names(self) -> list[str]:
        """The objectives' metrics, in order."""
        return [next(iter(o)) for o in self.objectives]

    @property
    def directions(self) -> list[str]:
        """The objectives' directions, in order."""
        return [next(iter(o.values())) for o in self.objectives]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A search experiment file: what to search, how to train candidates, and how Optuna drives it."""

    name: str
    seed: int = 0
    search_space: SearchSpaceConfig = SearchSpaceConfig()
    model: ModelConfig = ModelConfig()
    task: DetectionConfig = DetectionConfig()
    search: SearchConfig = SearchConfig()
    source: Optional[str] = dataclasses.field(default=None, compare=False, metadata={"internal": True})

    def __post_init__(self):
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigError(f"name: use letters, digits, '-', '_' or '.', got {self.name!r}")

    @property
    def train_config(self) -> TrainConfig:
        """What each trial trains: the model scaling and the task."""
        return TrainConfig(model=self.model, task=self.task)

    @property
    def run_dir(self) -> str:
        """``runs/<name>``: the study database, artifacts and per-trial outputs."""
        return os.path.join("runs", self.name)

    @property
    def storage_url(self) -> str:
        """``search.storage``, or the embedded SQLite file under ``run_dir``."""
        return self.search.storage or f"sqlite:///{os.path.join(self.run_dir, 'study.db')}"

    @property
    def study_name(self) -> str:
        """``search.study_name``, or the experiment's name."""
        return self.search.study_name or self.name

    def to_data(self) -> dict:
        """Plain data of the experiment (what the study stores)."""
        from nas.config import to_data

        data = to_data(self)
        data.pop("source")
        return data

    @staticmethod
    def _drop_new_defaults(data: dict) -> None:
        # Keys added after studies were stored: leave them out at their defaults,
        # so the fingerprints of existing experiments stay the same.
        space = data["search_space"]
        if space.get("family") == "spinenet" and not space.get("block_options"):
            space.pop("family")
            space.pop("block_options")
        if data["task"]["head"].get("separable") is False:
            data["task"]["head"].pop("separable")

    @property
    def fingerprint(self) -> str:
        """Hash of everything that changes what a trial means (not the budget or storage)."""
        data = self.to_data()
        for key in ("n_trials", "timeout", "storage", "study_name", "max_retries", "heartbeat_interval"):
            data["search"].pop(key)
        data["task"]["training"].pop("strategy")  # where a trial trains, not what it means
        self._drop_new_defaults(data)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_experiment(path: str, overrides: Sequence[str] = ()) -> Experiment:
    """Read and validate an experiment file; errors name the file and the key path."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (name, search_space, model, task, search)")
    raw = apply_overrides(raw, overrides)
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
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
            from nas.config import closest

            raise ConfigError(f"{where}{unknown[0]}: unknown section{closest(unknown[0], ['model', 'task'])}")
    data = apply_overrides(data, overrides)
    try:
        return from_data(TrainConfig, data, "")
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None
