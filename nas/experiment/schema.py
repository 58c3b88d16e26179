"""The experiment file's schema: the search space, the search, and the :class:`Experiment` that holds them.

The model and task sections are :mod:`nas.experiment.train_config`'s; what a
study's fingerprint covers is :mod:`nas.experiment.fingerprint`'s, the
fidelities' overrides :mod:`nas.experiment.fidelities`'.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional

from nas.config import ConfigError, closest, require, to_data
from nas.experiment import fidelities
from nas.experiment.fingerprint import digest, meaning, study_matches
from nas.experiment.train_config import ModelConfig, TaskSection, TrainConfig, default_task


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
    # Deployed-model latency at search.latency's size and threads (predicted unless source: measured).
    max_latency_ms: Optional[float] = None

    def __post_init__(self):
        for name in ("max_params", "max_multiply_adds", "max_latency_ms"):
            value = getattr(self, name)
            require(value is None or (isinstance(value, (int, float)) and value > 0), name,
                    "positive (or null for none)", value)


# The metric a trial records when the experiment uses latency (search.latency, or latency_ms named anywhere).
LATENCY_METRIC = "latency_ms"


@dataclasses.dataclass(frozen=True)
class LatencyConfig:
    """How ``latency_ms`` is had: the deployed model (the task's whole inference model) under LiteRT at batch 1.

    ``input_size`` is the deploy size (null: the task's image size; a proxy
    trains small, a device runs large). ``source: predicted`` sums the
    model's kernels from this machine's calibration table (``table``, null:
    the default under ``~/.cache/spinenas/latency/``; ``spinenas latency
    --calibrate`` measures it, and a search measures what it lacks);
    ``measured`` converts and times every genome (``repeats`` timed runs).
    """

    source: Literal["predicted", "measured"] = "predicted"
    input_size: Optional[int] = None
    threads: int = 1
    table: Optional[str] = None
    repeats: int = 20

    def __post_init__(self):
        require(self.source in ("predicted", "measured"), "source", "predicted or measured", self.source)
        require(self.input_size is None or (isinstance(self.input_size, int) and self.input_size > 0), "input_size",
                "a positive number of pixels (or null)", self.input_size)
        require(isinstance(self.threads, int) and self.threads >= 1, "threads", "at least 1", self.threads)
        require(isinstance(self.repeats, int) and self.repeats >= 1, "repeats", "at least 1", self.repeats)


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
        require(self.candidates >= 1, "candidates", "at least 1", self.candidates)
        require(self.prescreen is None or self.prescreen >= 1, "prescreen", "at least 1 (or null)", self.prescreen)
        require(self.batch_size >= 2, "batch_size", "at least 2", self.batch_size)


@dataclasses.dataclass(frozen=True)
class ConfirmConfig:
    """The confirmation stage (``spinenas confirm``, and the end of ``spinenas search``): see :mod:`nas.confirm`.

    ``top_k`` best distinct feasible genomes of the search and every seed
    genome are trained ``repeats`` times (training seeds ``seed`` upwards) with
    ``settings`` (``model.*``/``task.*`` overrides, as a fidelity's) and, when
    given, ``data`` (a COCO-format folder, as ``spinenas data import`` writes:
    your own data or a held-out split) in place of the task's data.
    """

    top_k: int = 3
    repeats: int = 3
    settings: dict = dataclasses.field(default_factory=dict)
    data: Optional[str] = None

    def __post_init__(self):
        require(self.top_k >= 1, "top_k", "at least 1", self.top_k)
        if self.repeats < 2:
            raise ConfigError(f"repeats: {self.repeats} run(s) a genome leave no variance to test with; use 2 or more")


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
    # Deployed latency (absent: none, unless latency_ms is an objective or max_latency_ms a constraint).
    latency: Optional[LatencyConfig] = None

    def __post_init__(self):
        require(self.check_every >= 0, "check_every", "0 or more", self.check_every)
        require(self.n_trials >= 1, "n_trials", "positive", self.n_trials)
        require(self.timeout is None or not self.timeout <= 0, "timeout", "positive seconds (or null for none)",
                self.timeout)
        require(self.max_retries >= 0, "max_retries", "0 or more", self.max_retries)
        require(self.trials_per_process >= 1, "trials_per_process", "at least 1", self.trials_per_process)
        require(not self.max_process_memory_growth_mb <= 0, "max_process_memory_growth_mb", "positive",
                self.max_process_memory_growth_mb)
        require(self.heartbeat_interval >= 1, "heartbeat_interval", "at least 1 second", self.heartbeat_interval)
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
    task: TaskSection = dataclasses.field(default_factory=default_task)
    search: SearchConfig = SearchConfig()
    # Named training settings for ``spinenas fidelity`` (see nas.experiment.fidelities).
    # Out of the fingerprint: a search trial means the same whatever fidelities the file lists.
    fidelities: dict = dataclasses.field(default_factory=dict)
    # The confirmation stage (nas.confirm); out of the fingerprint, like the fidelities.
    confirm: Optional[ConfirmConfig] = None
    source: Optional[str] = dataclasses.field(default=None, compare=False, metadata={"internal": True})

    def __post_init__(self):
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigError(f"name: use letters, digits, '-', '_' or '.', got {self.name!r}")
        task = self.task_plugin
        if not self.search.objectives:  # the task's default, written out so the study records it
            objectives = ({task.default_objective: task.metrics[task.default_objective]},)
            object.__setattr__(self, "search", dataclasses.replace(self.search, objectives=objectives))
        known = {**task.all_metrics, LATENCY_METRIC: "minimize"}
        for i, metric in enumerate(self.search.metric_names):
            if metric not in known:
                raise ConfigError(f"search.objectives[{i}]: unknown metric {metric!r}{closest(metric, known)}; "
                                  f"the {task.name} task reports {', '.join(known)}")
        if self.fidelities:
            self.fidelity_configs()  # every override checked when the file loads, not when a trial starts
        if self.confirm is not None:
            self.confirm_config()

    @property
    def latency(self) -> Optional[LatencyConfig]:
        """The latency settings when the experiment uses latency (``search.latency``, objective or constraint)."""
        search = self.search
        if search.latency is not None:
            return search.latency
        if LATENCY_METRIC in search.metric_names or search.constraints.max_latency_ms is not None:
            return LatencyConfig()
        return None

    def fidelity_configs(self) -> dict:
        """Each fidelity's :class:`TrainConfig` (the model and task sections with its overrides), in file order.

        An experiment without a ``fidelities`` section has one fidelity, ``proxy``: its own settings.
        """
        return fidelities.fidelity_configs(self.fidelities, self.model, self.task)

    def confirm_config(self) -> TrainConfig:
        """The confirmation's train config: the model and task with ``confirm.settings`` and ``confirm.data``."""
        overrides = dict(self.confirm.settings or {})
        if self.confirm.data is not None:
            overrides.update({"task.data.root": self.confirm.data, "task.data.generate_shapes": None})
        try:
            return fidelities.fidelity_configs({"confirm": overrides}, self.model, self.task)["confirm"]
        except ConfigError as err:
            raise ConfigError(str(err).replace("fidelities.confirm", "confirm.settings", 1)
                              .replace("a fidelity overrides", "confirm.settings overrides")) from None

    @property
    def reference_fidelity(self) -> str:
        """The most expensive fidelity, the one others are ranked against: ``fidelities.reference`` or the last."""
        return fidelities.reference_fidelity(self.fidelities, self.fidelity_configs())

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
        return digest(meaning(self.to_data()))

    def matches(self, fingerprint: str, stored: Optional[dict]) -> bool:
        """True when a study made with ``fingerprint`` (and experiment data ``stored``) means this experiment.

        Settings added to spinenas after the study was made are ignored while
        they keep their defaults, so upgrading never locks a user out of a study.
        """
        if fingerprint == self.fingerprint:
            return True
        defaults = Experiment(name=self.name, task=type(self.task)()).to_data()
        return study_matches(self.to_data(), defaults, fingerprint, stored)
