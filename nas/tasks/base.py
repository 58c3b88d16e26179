"""What a proxy task is: the narrow contract the search driver, workers and commands rely on.

A task owns its config schema (the ``task`` section of a config file, a frozen
dataclass with a ``name`` field, ``data.image_size``, ``training`` (a
:class:`nas.tasks.training_config.TrainingConfig`) and ``evaluation.every_epoch``),
its data, its head, loss and evaluation, the metrics it reports with their
directions, and the analytic cost of its head. The training loop is not a
task's: every task trains through :func:`nas.tasks.training.train_genome`. Nothing
outside a task's own package imports that package: everything else asks the
registry in :mod:`nas.tasks`.

Examples:
    >>> from nas.tasks import get_task
    >>> task = get_task("detection")
    >>> task.metrics["AP"], task.default_objective
    ('maximize', 'AP')
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Optional

# report(step, metrics) after each intermediate evaluation; it may raise to stop training.
Report = Callable[[int, dict], None]

# Known before training, from the cost model of backbone plus head; every task has them.
COST_METRICS = {"params": "minimize", "multiply_adds": "minimize"}


class DataError(ValueError):
    """A dataset that cannot be read or used; the message names the file or folder and the problem."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the genome or learning rate cannot be trained as set."""


@dataclasses.dataclass(frozen=True)
class DataSummary:
    """What the search needs to know about a task's prepared data.

    ``train_images`` (None: the task does not say) lets a time budget scale
    a trial's measured time to another dataset's size.
    """

    num_classes: int
    description: str
    train_images: Optional[int] = None


class Task:
    """Base class of proxy tasks; subclass it and register an instance with :func:`nas.tasks.register_task`.

    Class attributes:
        name: the ``task.name`` that selects it.
        config_class: the frozen dataclass of the ``task`` section.
        metrics: metric name -> ``maximize`` or ``minimize``, as ``train_and_evaluate`` reports them.
        default_objective: the metric a search optimises when the experiment names none.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    metrics: ClassVar[dict[str, str]]
    default_objective: ClassVar[str]

    def prepare_data(self, config, progress: bool = False) -> DataSummary:
        """Read (generating if needed) the task's data once, before any trial or worker starts."""
        raise NotImplementedError

    def train_and_evaluate(self, genome, train_config, report: Optional[Report] = None, *,
                           out_dir: Optional[str] = None, progress: bool = False) -> dict:
        """Train ``genome`` under ``train_config`` (model scaling + this task's config); return metrics.

        The result holds every name of :attr:`metrics`, plus ``timing`` (seconds by phase, ``total``
        included) and ``history`` (the intermediate reports). Raises :class:`TrainingDiverged`.
        """
        raise NotImplementedError

    def build_model(self, backbone, train_config, num_classes: int):
        """The task's whole Keras model: ``backbone`` (a decoded genome) plus this task's head."""
        raise NotImplementedError

    def head_cost(self, genome, train_config, num_classes: int, input_size=None):
        """Analytic :class:`spinenet.cost.Cost` of the head this task puts on the backbone.

        ``input_size`` (an int or ``(height, width)``) defaults to the config's ``data.image_size``.
        """
        raise NotImplementedError

    def head_kernels(self, genome, train_config, num_classes: int, input_size: int) -> list:
        """The LiteRT kernels (:class:`spinenet.latency.kernels.Kernel`) of this task's deployed head and outputs.

        What :meth:`inference_function`'s model runs after the backbone, at
        ``input_size`` pixels, for the latency predictor. The default has none.
        """
        return []

    def kernel_builders(self, train_config) -> dict:
        """``{op: builder}`` for the task's own kernel ops in :meth:`head_kernels`, to time them at calibration.

        A builder takes a kernel and returns ``(concrete function, inputs)`` of a
        model running that kernel alone (see :mod:`spinenet.latency.calibration`).
        """
        return {}

    def minibatch(self, train_config, batch_size: int, seed: int):
        """One batch of the task's real training data, ``(images, targets)``, the same for the same ``seed``.

        ``images`` is a float32 array ``[batch_size, S, S, 3]`` as training sees it (no augmentation);
        ``targets`` is whatever :meth:`loss_fn`'s function takes. Zero-cost proxies score genomes on it.
        """
        raise NotImplementedError

    def loss_fn(self, genome, train_config, num_classes: int):
        """``loss(outputs, targets) -> scalar tensor``: the task's training loss (no weight decay).

        ``outputs`` is what :meth:`build_model`'s model returns for a :meth:`minibatch`'s images.
        """
        raise NotImplementedError

    def inference_function(self, model, train_config, num_classes):
        """The deployed model as a function: float32 pixels [B, S, S, 3] in 0..255 -> dict of output tensors.

        S is ``data.image_size`` (images already resized); normalisation is
        inside. ``model`` is :meth:`build_model`'s. The result is a
        :class:`nas.tasks.deploy.InferenceFunction` (callable, and saying what
        each output means); :mod:`nas.tasks.deploy` writes it as a SavedModel or
        a LiteRT file.
        """
        raise NotImplementedError

    def evaluate_on(self, train_config, split: str) -> list[str]:
        """``--set`` overrides that make training's evaluation score ``split`` (``test``: the held-out split).

        A task without held-out splits raises ``ValueError``.
        """
        raise ValueError(f"the {self.name} task has no {split} split to evaluate on")

    def check_data_layout(self, config) -> None:
        """Raise :class:`DataError` naming the first file or folder that ``config.data`` (the task section) lacks.

        Only the layout is checked, nothing is read, so commands call it on
        ``--data DIR`` before they record anything; the message starts with
        the data folder and says what it should hold. The default checks nothing.
        """

    def add_commands(self, subparsers, *, load_train_config) -> None:
        """Register the task's own ``spinenas`` subcommands (its data tools, say); none by default.

        ``load_train_config(path, overrides)`` reads a train config file as the
        schema does; it is passed in because a task never imports the schema.
        """

    @property
    def all_metrics(self) -> dict[str, str]:
        """The task's metrics and the cost metrics, with their directions."""
        return {**self.metrics, **COST_METRICS}


def model_kernels(task: Task, genome, train_config, num_classes: int, input_size: int) -> list:
    """The LiteRT kernels of the deployed model of ``genome`` at ``input_size``: backbone, then the task's head."""
    from spinenet.latency.kernels import plan_kernels
    from spinenet.plan.network import plan_network
    from spinenet.scaling import check_input_size

    model = train_config.model
    check_input_size(genome, (input_size, input_size))
    plan = plan_network(genome, _family_scaling(model.scaling, genome.family))
    kernels = plan_kernels(plan.layers, input_size, input_size, model.activation)
    return kernels + task.head_kernels(genome, train_config, num_classes, input_size)


def _family_scaling(scaling, family: str):
    # The genome's family picks filters, stem and resampling, as network_cost does.
    return scaling if scaling.family == family else dataclasses.replace(scaling, family=family)


def model_cost(task: Task, genome, train_config, num_classes: int):
    """Backbone plus head cost of ``genome`` at the task's image size, and the backbone's alone."""
    from spinenet.cost import Cost, network_cost

    backbone = network_cost(genome, train_config.task.data.image_size, scaling=train_config.model.scaling)
    head = task.head_cost(genome, train_config, num_classes)
    return Cost(backbone.params + head.params, backbone.multiply_adds + head.multiply_adds), backbone
