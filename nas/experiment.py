"""Schemas of the config files: the model scaling and the task a genome is trained on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Annotated, Any, Literal, Optional, Sequence

from nas.config import ConfigError, Tagged, apply_overrides, closest, from_data, read_yaml, to_data


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


ACTIVATIONS = ("relu", "swish", "silu", "gelu", "elu", "selu")


def _task_schema(name: str) -> type:
    from nas.tasks import get_task

    return get_task(name).config_class


# The ``task`` section: its schema is the one of the task its ``name`` selects.
TaskSection = Annotated[object, Tagged("name", "detection", _task_schema)]


def _default_task():
    return _task_schema("detection")()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What ``spinenas train`` and every trial read: the decode scaling and the task."""

    model: ModelConfig = ModelConfig()
    task: TaskSection = dataclasses.field(default_factory=_default_task)


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
        """The seed genomes: reference names (``spinenet-49``, ``r50-like``) or genome files relative to ``base_dir``."""
        from spinenet.specs import REFERENCE_GENOMES, resolve_genome

        genomes = []
        for entry in self.seed_genomes:
            if entry.lower() not in REFERENCE_GENOMES and not os.path.exists(os.path.join(base_dir, entry)):
                raise ConfigError(f"seed_genomes: {entry!r} is neither a reference genome "
                                  f"({', '.join(REFERENCE_GENOMES)}) nor an existing genome file")
            try:
                genomes.append(resolve_genome(entry, base_dir))
            except ValueError as err:
                raise ConfigError(f"seed_genomes: {err}") from None
        return genomes


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """A sampler from :data:`nas.samplers.SAMPLERS` by name; ``options`` go to its constructor.

    The name and options are checked where the sampler is built
    (:func:`nas.search.study.build_strategies`), so the schema needs no sampler code.
    """

    name: str = "tpe"
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PrunerConfig:
    """A pruner from :data:`nas.pruners.PRUNERS` by name (single-objective studies only), checked where built."""

    name: str = "none"
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ConstraintsConfig:
    """Budgets checked with the cost model before anything is trained."""

    max_params: Optional[float] = None
    max_multiply_adds: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class ScreeningConfig:
    """Training-free screening: every trial is the best of ``candidates`` genomes by a zero-cost ``proxy``.

    ``proxy`` with a leading minus (``-multiply_adds``) prefers the lowest score.
    The default, ``-ensemble``, ranked the recorded table's genomes best (the
    README's screening section); ``-multiply_adds`` is the free alternative.

    Evolution screens ``candidates`` mutants of each tournament winner; any
    other sampler gets a pre-screen that scores ``candidates`` x ``prescreen``
    random genomes and queues the best ``prescreen`` (default: half of
    ``n_trials``). Every trial records its proxy scores (``proxy_scores``).
    """

    proxy: str = "-ensemble"  # checked where screening is set up (nas.search.study.build_strategies)
    candidates: int = 8
    prescreen: Optional[int] = None
    batch_size: int = 8

    def __post_init__(self):
        if self.candidates < 1:
            raise ConfigError(f"candidates: must be at least 1, got {self.candidates}")
        if self.prescreen is not None and self.prescreen < 1:
            raise ConfigError(f"prescreen: must be at least 1 (or null), got {self.prescreen}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size: must be at least 2, got {self.batch_size}")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How Optuna searches: sampler, pruner, budget, objectives, constraints, storage."""

    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    n_trials: int = 20
    timeout: Optional[float] = None
    objectives: tuple[dict, ...] = ()  # empty: the task's default objective
    constraints: ConstraintsConfig = ConstraintsConfig()
    storage: Optional[str] = None
    study_name: Optional[str] = None
    max_retries: int = 1
    heartbeat_interval: int = 30
    # A worker trains consecutive trials in one warm process (TensorFlow imported once), replaced
    # after any failure, after this many trials, or when it grew by more than this much memory.
    trials_per_process: int = 8
    max_process_memory_growth_mb: float = 2048.0
    # Optional: pick each trial among zero-cost-screened candidates (absent: off, fingerprint unchanged).
    screening: Optional[ScreeningConfig] = None
    # Every this many complete trials, record how well proxies and the predictor rank them (0: never).
    check_every: int = 5

    def __post_init__(self):
        if self.check_every < 0:
            raise ConfigError(f"check_every: must be 0 or more, got {self.check_every}")
        if self.n_trials < 1:
            raise ConfigError(f"n_trials: must be positive, got {self.n_trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"timeout: must be positive seconds (or null for none), got {self.timeout}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries: must be 0 or more, got {self.max_retries}")
        if self.trials_per_process < 1:
            raise ConfigError(f"trials_per_process: must be at least 1, got {self.trials_per_process}")
        if self.max_process_memory_growth_mb <= 0:
            raise ConfigError(f"max_process_memory_growth_mb: must be positive, got {self.max_process_memory_growth_mb}")
        if self.heartbeat_interval < 1:
            raise ConfigError(f"heartbeat_interval: must be at least 1 second, got {self.heartbeat_interval}")
        seen = set()
        for i, objective in enumerate(self.objectives):
            if not isinstance(objective, dict) or len(objective) != 1:
                raise ConfigError(f"objectives[{i}]: expected one 'metric: direction' pair, got {objective!r}")
            (metric, direction), = objective.items()
            if direction not in ("maximize", "minimize"):
                raise ConfigError(f"objectives[{i}]: direction must be maximize or minimize, got {direction!r}")
            if metric in seen:
                raise ConfigError(f"objectives[{i}]: {metric} is listed twice")
            seen.add(metric)
        if self.sampler.name in ("evolution", "predictor") and len(self.objectives) > 1:
            raise ConfigError(f"sampler: {self.sampler.name} supports one objective; use nsga2 for several")
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
    task: TaskSection = dataclasses.field(default_factory=_default_task)
    search: SearchConfig = SearchConfig()
    # Named training settings for ``spinenas fidelity``: ``{name: {dotted.key: value}}`` overrides of the
    # model and task sections, cheapest first, plus ``reference: NAME`` (default: the last, most expensive).
    # Out of the fingerprint: a search trial means the same whatever fidelities the file lists.
    fidelities: dict = dataclasses.field(default_factory=dict)
    source: Optional[str] = dataclasses.field(default=None, compare=False, metadata={"internal": True})

    def __post_init__(self):
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigError(f"name: use letters, digits, '-', '_' or '.', got {self.name!r}")
        task = self.task_plugin
        if not self.search.objectives:  # the task's default, written out so the study records it
            objectives = ({task.default_objective: task.metrics[task.default_objective]},)
            object.__setattr__(self, "search", dataclasses.replace(self.search, objectives=objectives))
        known = task.all_metrics
        for i, metric in enumerate(self.search.metric_names):
            if metric not in known:
                raise ConfigError(f"search.objectives[{i}]: unknown metric {metric!r}{closest(metric, known)}; "
                                  f"the {task.name} task reports {', '.join(known)}")
        if self.fidelities:
            self.fidelity_configs()  # every override checked when the file loads, not when a trial starts

    def fidelity_configs(self) -> dict:
        """Each fidelity's :class:`TrainConfig` (the model and task sections with its overrides), in file order.

        An experiment without a ``fidelities`` section has one fidelity, ``proxy``: its own settings.
        """
        entries = {k: v for k, v in self.fidelities.items() if k != FIDELITY_REFERENCE_KEY}
        if not entries:
            if self.fidelities:
                raise ConfigError("fidelities: lists no fidelity, only the reference")
            entries = {"proxy": {}}
        base = {"model": to_data(self.model), "task": to_data(self.task)}
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
        reference = self.fidelities.get(FIDELITY_REFERENCE_KEY)
        if reference is not None and reference not in configs:
            raise ConfigError(f"fidelities.{FIDELITY_REFERENCE_KEY}: {reference!r} is not a fidelity"
                              f"{closest(str(reference), configs)}; fidelities are {', '.join(configs)}")
        return configs

    @property
    def reference_fidelity(self) -> str:
        """The most expensive fidelity, the one others are ranked against: ``fidelities.reference`` or the last."""
        return self.fidelities.get(FIDELITY_REFERENCE_KEY) or list(self.fidelity_configs())[-1]

    @property
    def task_plugin(self):
        """The registered :class:`nas.tasks.base.Task` that ``task.name`` selects."""
        from nas.tasks import get_task

        return get_task(self.task.name)

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
        data = to_data(self)
        data.pop("source")
        return data

    @property
    def fingerprint(self) -> str:
        """Hash of everything that changes what a trial means (not the budget, storage or placement)."""
        return _hash(_meaning(self.to_data()))

    def matches(self, fingerprint: str, stored: Optional[dict]) -> bool:
        """True when a study made with ``fingerprint`` (and experiment data ``stored``) means this experiment.

        Settings added to spinenas after the study was made are ignored while
        they keep their defaults, so upgrading never locks a user out of a study.
        """
        if fingerprint == self.fingerprint:
            return True
        if not isinstance(stored, dict):
            return False
        defaults = _meaning(Experiment(name=self.name, task=type(self.task)()).to_data())
        for path, value in LEGACY_VALUES.items():  # what the code did before the setting existed
            node = defaults
            for key in path[:-1]:
                node = node.get(key, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict) and path[-1] in node:
                node[path[-1]] = value
        restricted = _restrict(_meaning(self.to_data()), _meaning(stored), defaults)
        return restricted is not None and _hash(restricted) == fingerprint


# Settings whose default changed what a trial computes when they were added: a study made before
# them matches only the old behaviour (resume an old study with --set task.training.precision=float32).
LEGACY_VALUES = {("task", "training", "precision"): "float32"}


# Keys that say how much to run or where, not what a trial means.
_BUDGET_KEYS = ("n_trials", "timeout", "storage", "study_name", "max_retries", "heartbeat_interval",
                "trials_per_process", "max_process_memory_growth_mb", "check_every")


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


# Names inside the ``fidelities`` section that are settings, not fidelities.
FIDELITY_REFERENCE_KEY = "reference"


def _meaning(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data.pop("fidelities", None)  # how spinenas fidelity measures, not what a search trial means
    for key in _BUDGET_KEYS:
        data.get("search", {}).pop(key, None)
    data.get("task", {}).get("training", {}).pop("strategy", None)  # where a trial trains, not what it means
    if data.get("search", {}).get("screening", 0) is None:
        del data["search"]["screening"]  # off: hashes as before screening existed
    evaluation = data.get("task", {}).get("evaluation", {})
    if evaluation.get("every_epoch") == "auto":
        # auto scores a trial exactly as true did (the final evaluation is the result); only whether
        # intermediate evaluations run differs, so studies made with the old default still open.
        evaluation["every_epoch"] = True
    return data


def _hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _restrict(current, stored, defaults):
    """``current`` cut to the keys ``stored`` has, or None when a cut key is away from its default."""
    if not (isinstance(current, dict) and isinstance(stored, dict)):
        return current
    out = {}
    for key, value in current.items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if key in stored:
            inner = _restrict(value, stored[key], default)
            if inner is None and value is not None:
                return None
            out[key] = inner
        elif not isinstance(defaults, dict) or key not in defaults or defaults[key] != value:
            return None
    return out


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


SECTIONS = ("name", "seed", "search_space", "model", "task", "search", "fidelities")


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
