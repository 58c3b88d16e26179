"""Any genome as a TF Model Garden experiment: a registration module, experiment YAML and a README (pure Python).

The Model Garden builds backbones by name (``backbone.type`` in an
experiment) from builders registered with its backbone factory, and reads the
backbone's settings from the field of that name in its ``Backbone`` one-of
config. :func:`plan_model_garden` writes, for one genome:

- ``spinenas_<fingerprint>_backbone.py``: registers the backbone type
  ``spinenas_<fingerprint>``, whose builder makes the Model Garden's own
  ``SpineNet`` (``SpineNetMobile`` for a ``mobile`` genome) with the genome's
  ``block_specs``; a subclass of the ``Backbone`` one-of that adds that type's
  field; and one experiment per detector (``spinenas_<fingerprint>_retinanet``,
  ``..._maskrcnn``, ``..._cascadercnn``), the Model Garden's SpineNet
  experiment of that detector with the backbone config swapped for the
  subclass, so ``backbone.type: spinenas_<fingerprint>`` parses in YAML;
- ``retinanet.yaml``, ``maskrcnn.yaml``, ``cascadercnn.yaml`` (RetinaNet only
  for a ``mobile`` genome): the backbone at the chosen scaling and input size,
  and the training recipe :data:`SEED_RECIPE`;
- ``train.py``: ``official.vision.train`` imports no user module, so this
  imports the registration module and then runs its ``main`` with the same flags;
- ``README.md``: what was exported and the command that trains each model.

Nothing here imports the Model Garden; the generated module does.

Examples:
    >>> from spinenet import SPINENET_49
    >>> export = plan_model_garden(SPINENET_49, "49")
    >>> export.backbone_type
    'spinenas_c2050b6cf2962013'
    >>> sorted(export.files)  # doctest: +NORMALIZE_WHITESPACE
    ['README.md', 'cascadercnn.yaml', 'maskrcnn.yaml', 'retinanet.yaml',
     'spinenas_c2050b6cf2962013_backbone.py', 'train.py']
    >>> export.params
    21920192
"""

from __future__ import annotations

import dataclasses
import math
import os
import textwrap

import yaml

from search_spaces.block_fns import get_block_fn
from search_spaces.genome import Genome
from spinenet.cost import count_params
from spinenet.model_garden_backbone import (ModelGardenError, check_buildable, model_garden_backbone,
                                            model_garden_block_fn)
from spinenet.scaling import DecodeError, check_input_size
from spinenet.specs import MOBILE_PREFIX, scaling_for

# The release the generated module and YAML were checked against (tests/model_garden.py).
MODEL_GARDEN_VERSION = "2.20.0"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A COCO training recipe, as the experiment YAML states it.

    Attributes:
        epochs: length of the schedule.
        decay_before_end: the learning rate drops tenfold this many epochs before the end, at each entry.
        batch_size: the global training batch.
        learning_rate: the rate before the first drop (for ``batch_size``).
        warmup_steps: the linear warm-up's length.
        warmup_learning_rate: the rate it starts from.
        momentum: of SGD.
        scale_jitter: the random scale range of training images.
        horizontal_flips: flip training images at random.
        l2_weight_decay: on every weight.
        train_examples: images in COCO train2017.
        val_examples: images in COCO val2017.
        eval_batch_size: the evaluation batch.
    """

    epochs: int = 350
    decay_before_end: tuple[int, ...] = (30, 10)
    batch_size: int = 256
    learning_rate: float = 0.32
    warmup_steps: int = 2000
    warmup_learning_rate: float = 0.0067
    momentum: float = 0.9
    scale_jitter: tuple[float, float] = (0.5, 2.0)
    horizontal_flips: bool = True
    l2_weight_decay: float = 4e-5
    train_examples: int = 118287
    val_examples: int = 5000
    eval_batch_size: int = 8

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs <= max(
                self.decay_before_end):
            raise ModelGardenError(
                f"epochs must be an integer above {max(self.decay_before_end)} (the learning rate drops "
                f"{' and '.join(map(str, self.decay_before_end))} epochs before the end), got {self.epochs!r}")

    @property
    def steps_per_epoch(self) -> int:
        """Training steps per pass over the training images (the last batch partly filled)."""
        return math.ceil(self.train_examples / self.batch_size)


# The seed document's settings for detectors trained from scratch (the TF-Vision Model Garden README,
# /work/shared/seeds): 350 epochs at batch 256, the learning rate cut in the last 30 and 10 epochs,
# horizontal flips, scale jitter 0.5-2.0, L2 regularization.
SEED_RECIPE = Recipe()

_DETECTOR_TITLES = {"retinanet": "RetinaNet", "maskrcnn": "Mask R-CNN", "cascadercnn": "Cascade R-CNN"}

# Per family: the default scaling and input size (the published SpineNet-49 and Mobile SpineNet-49 ones), the
# activation (ReLU as in the seed's recipe; swish, as Mobile SpineNet was published), and per detector
# the Model Garden's SpineNet experiment to start from (the published Mobile SpineNet is a RetinaNet only).
_FAMILIES = {
    "spinenet": {"model_id": "49", "input_size": 640, "activation": "relu",
                 "experiments": {"retinanet": "retinanet_spinenet_coco", "maskrcnn": "maskrcnn_spinenet_coco",
                                 "cascadercnn": "cascadercnn_spinenet_coco"}},
    "mobile": {"model_id": "mobile-49", "input_size": 384, "activation": "swish",
               "experiments": {"retinanet": "retinanet_mobile_coco"}},
}


@dataclasses.dataclass(frozen=True)
class ModelGardenExport:
    """The files that make one genome a set of Model Garden experiments, and what they register.

    Attributes:
        genome: the exported genome.
        model_id: the scaling (``49``, ``mobile-49``, ...).
        input_size: the square, padded training input.
        backbone_type: the registered backbone type (``spinenas_<fingerprint>``).
        module: the registration module's name.
        experiments: detector -> registered experiment name (each has ``<detector>.yaml``).
        params: the backbone's parameters (:func:`spinenet.cost.count_params`, batch-norm statistics included).
        files: file name -> text.
    """

    genome: Genome
    model_id: str
    input_size: int
    backbone_type: str
    module: str
    experiments: dict
    params: int
    files: dict

    def write(self, folder: str) -> list[str]:
        """Write :attr:`files` into ``folder`` (created if needed); returns the names written."""
        os.makedirs(folder, exist_ok=True)
        for name, text in self.files.items():
            with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
                handle.write(text)
        return list(self.files)


def model_garden_scaling(genome: Genome, model_id: str | None = None) -> tuple[str, dict]:
    """The model id (the family's 49 when None) and its scaling, or a :class:`ModelGardenError`."""
    model_garden_backbone(genome)  # names a family without a Model Garden backbone
    family = _FAMILIES[genome.family]
    model_id = family["model_id"] if model_id is None else str(model_id)
    try:
        scaling = scaling_for(model_id)
    except ValueError as err:
        raise ModelGardenError(str(err)) from None
    mobile_id = model_id.lower().startswith(MOBILE_PREFIX)
    if mobile_id != (genome.family == "mobile"):
        kind = "a Mobile SpineNet" if mobile_id else "a SpineNet"
        hint = "mobile-49, mobile-49S or mobile-49XS" if genome.family == "mobile" else "49S, 49, 96, 143 or 190"
        raise ModelGardenError(f"scaling {model_id} is {kind} scaling and this genome's family is "
                               f"{genome.family!r}: choose {hint}")
    return model_id, scaling


def plan_model_garden(genome: Genome, model_id: str | None = None, input_size: int | None = None, *,
                      recipe: Recipe = SEED_RECIPE, activation: str | None = None,
                      source: str = "") -> ModelGardenExport:
    """The Model Garden files of ``genome`` at scaling ``model_id`` and a square ``input_size``.

    Defaults: the family's 49 scaling at 640 px (Mobile SpineNet-49 at 384
    px), its activation (relu; swish for ``mobile``) and :data:`SEED_RECIPE`.
    ``source`` says where the genome comes from (``trial 3 of study 'x'``).
    Raises :class:`ModelGardenError` for a genome the Model Garden cannot
    build, a scaling of another family, or an input size its levels do not divide.
    """
    check_buildable(genome)
    # One line: it lands in YAML comments, Markdown and Python docstrings.
    source = " ".join(str(source).split())
    family = _FAMILIES[genome.family]
    model_id, scaling = model_garden_scaling(genome, model_id)
    input_size = family["input_size"] if input_size is None else input_size
    try:
        check_input_size(genome, (input_size, input_size))
    except DecodeError as err:
        raise ModelGardenError(str(err).replace("input height", "input size")) from None
    activation = family["activation"] if activation is None else activation
    if activation not in ("relu", "swish"):
        raise ModelGardenError(f"activation must be relu or swish (the Model Garden's SpineNet has those), "
                               f"got {activation!r}")
    backbone_type = f"spinenas_{genome.fingerprint}"
    module = f"{backbone_type}_backbone"
    detectors = list(family["experiments"])
    experiments = {name: f"{backbone_type}_{name}" for name in detectors}
    params = count_params(genome, **scaling)
    context = _Context(genome, model_id, scaling, input_size, activation, recipe, backbone_type, module,
                       experiments, params, source)
    files = {f"{module}.py": _module_source(context), "train.py": _train_source(context)}
    for name in detectors:
        files[f"{name}.yaml"] = _experiment_yaml(context, name)
    files["README.md"] = _readme(context)
    return ModelGardenExport(genome, model_id, input_size, backbone_type, module, experiments, params,
                             dict(sorted(files.items())))


# The backbone config's fields: a scaling's, and the training-time stochastic depth.
_FIELD_TYPES = {"filter_size_scale": float, "resample_alpha": float, "block_repeats": int,
                "endpoints_num_filters": int, "stochastic_depth_drop_rate": float}


@dataclasses.dataclass(frozen=True)
class _Context:
    genome: Genome
    model_id: str
    scaling: dict
    input_size: int
    activation: str
    recipe: Recipe
    backbone_type: str
    module: str
    experiments: dict
    params: int
    source: str

    @property
    def mobile(self) -> bool:
        return self.genome.family == "mobile"

    @property
    def scaling_name(self) -> str:
        """``SpineNet-49`` or ``Mobile SpineNet-49``."""
        if self.mobile:
            return f"Mobile SpineNet-{self.model_id[len(MOBILE_PREFIX):]}"
        return f"SpineNet-{self.model_id}"

    @property
    def what(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"genome {self.genome.fingerprint}{where}"

    @property
    def what_in_docstring(self) -> str:
        """:attr:`what`, safe inside a triple-quoted Python string."""
        return self.what.replace("\\", "\\\\").replace('"', '\\"')

    def backbone_fields(self) -> dict:
        """The backbone config's fields and their values at this scaling (the YAML and the dataclass share them)."""
        keys = ("filter_size_scale", "endpoints_num_filters") if self.mobile else (
            "filter_size_scale", "resample_alpha", "block_repeats", "endpoints_num_filters")
        fields = {key: self.scaling[key] for key in keys}
        fields["stochastic_depth_drop_rate"] = 0.0
        return fields


def _module_source(c: _Context) -> str:
    backbone = model_garden_backbone(c.genome)
    # A variant with its base's options is written as the base: the Model Garden knows only its own names.
    specs = "\n".join(f"    {(level, model_garden_block_fn(fn, backbone), parents, output)!r},"
                      for level, fn, parents, output in c.genome.to_block_specs())
    fields = "\n".join(f"    {key}: {_FIELD_TYPES[key].__name__} = {_FIELD_TYPES[key](value)!r}"
                       for key, value in c.backbone_fields().items())
    base_of = _FAMILIES[c.genome.family]["experiments"]
    module = backbone.module
    arguments = ["input_specs=input_specs", "min_level=MIN_LEVEL", "max_level=MAX_LEVEL",
                 f"block_specs={module}.build_block_specs(BLOCK_SPECS)",
                 "endpoints_num_filters=config.endpoints_num_filters", "filter_size_scale=config.filter_size_scale"]
    if c.mobile:
        # SpineNetMobile builds every block as one MBConv of these options; block_fn only names it.
        mbconv = dict(get_block_fn("mbconv").options)
        arguments += ["block_repeats=1", f"expand_ratio={mbconv['expand_ratio']!r}", f"se_ratio={mbconv['se_ratio']!r}"]
    else:
        arguments += ["resample_alpha=config.resample_alpha", "block_repeats=config.block_repeats"]
    arguments += ["init_stochastic_depth_rate=config.stochastic_depth_drop_rate",
                  "kernel_regularizer=l2_regularizer", "activation=norm_activation_config.activation",
                  "use_sync_bn=norm_activation_config.use_sync_bn",
                  "norm_momentum=norm_activation_config.norm_momentum",
                  "norm_epsilon=norm_activation_config.norm_epsilon"]
    build = f"{module}.{backbone.name}(\n" + "".join(f"        {arg},\n" for arg in arguments) + "    )"
    experiments = "\n".join(f"    {name!r}: ({c.experiments[name]!r}, {base_of[name]!r}),"
                            for name in c.experiments)
    return f'''"""Registers {c.what_in_docstring} with the TF Model Garden.

Generated by ``spinenas export --model-garden``; tested with tf-models-official {MODEL_GARDEN_VERSION}.
Import it before the Model Garden reads an experiment that names the type; it registers

- the backbone type {c.backbone_type!r}: the Model Garden's {backbone.name} with this genome's blocks;
- the experiments {", ".join(repr(name) for name in c.experiments.values())}:
  the Model Garden's SpineNet experiments of those detectors, whose backbone config also has the
  {c.backbone_type!r} field.
"""

import dataclasses

from official.core import config_definitions
from official.core import exp_factory
from official.modeling import hyperparams
from official.vision.configs import backbones
from official.vision.configs import maskrcnn  # noqa: F401  (registers the base experiments)
from official.vision.configs import retinanet  # noqa: F401
from official.vision.modeling.backbones import factory
from official.vision.modeling.backbones import {backbone.module}

BACKBONE_TYPE = {c.backbone_type!r}
FINGERPRINT = {c.genome.fingerprint!r}
MIN_LEVEL = {c.genome.min_level}
MAX_LEVEL = {c.genome.max_level}

# (level, block_fn, (input_offset0, input_offset1), is_output); offsets index every node, the 2 stem blocks first.
BLOCK_SPECS = [
{specs}
]

# detector -> (registered experiment, the Model Garden experiment it starts from)
EXPERIMENTS = {{
{experiments}
}}


@dataclasses.dataclass
class SpinenasBackbone(hyperparams.Config):
    """The scaling of the {c.backbone_type} backbone; the defaults are {c.model_id}'s."""

{fields}


@dataclasses.dataclass
class Backbone(backbones.Backbone):
    """The Model Garden's backbone one-of, plus {c.backbone_type!r}."""

    {c.backbone_type}: SpinenasBackbone = dataclasses.field(default_factory=SpinenasBackbone)


@factory.register_backbone_builder(BACKBONE_TYPE)
def build_backbone(input_specs, backbone_config, norm_activation_config, l2_regularizer=None):
    """The Model Garden's {backbone.name} with this genome's block specs, at the config's scaling."""
    if backbone_config.type != BACKBONE_TYPE:
        raise ValueError(f"backbone type {{backbone_config.type!r}} is not {{BACKBONE_TYPE!r}}")
    config = backbone_config.get()
    # Fresh BlockSpec objects per build: SpineNetMobile writes to them.
    return {build}


def _experiment(base_name):
    base = exp_factory.get_exp_config(base_name)
    base.task.model.backbone = Backbone(type=BACKBONE_TYPE)
    # The base's restrictions name backbone.spinenet; the genome fixes the endpoint levels instead.
    return config_definitions.ExperimentConfig(
        task=base.task, trainer=base.trainer, runtime=base.runtime,
        restrictions=["task.train_data.is_training != None", "task.validation_data.is_training != None",
                      f"task.model.min_level == {{MIN_LEVEL}}", f"task.model.max_level == {{MAX_LEVEL}}"])


def _register(name, base_name):
    exp_factory.register_config_factory(name)(lambda: _experiment(base_name))


for _name, _base in EXPERIMENTS.values():
    _register(_name, _base)
'''


def _train_source(c: _Context) -> str:
    return f'''"""Trains the Model Garden experiments of {c.what_in_docstring}.

``python -m official.vision.train`` imports only the Model Garden's own modules, so this registers
backbone type {c.backbone_type!r} and its experiments first, then runs that same program: it takes the
same flags (--experiment, --config_file, --params_override, --mode, --model_dir, ...).
"""

from absl import app
from absl import flags
from official.common import flags as tfm_flags
from official.vision import train

import {c.module}  # noqa: F401  (registers the backbone and the experiments)

if __name__ == "__main__":
    tfm_flags.define_flags()
    flags.mark_flags_as_required(["experiment", "mode", "model_dir"])
    app.run(train.main)
'''


def _experiment_config(c: _Context, detector: str) -> dict:
    """The experiment YAML of ``detector`` as a dict, in the Model Garden's experiment-config schema."""
    r = c.recipe
    steps = r.steps_per_epoch
    model = {
        "backbone": {"type": c.backbone_type, c.backbone_type: c.backbone_fields()},
        "decoder": {"type": "identity"},
        "input_size": [c.input_size, c.input_size, 3],
        "min_level": c.genome.min_level,
        "max_level": c.genome.max_level,
        "num_classes": 91,
        "anchor": {"anchor_size": 3},
        "norm_activation": {"activation": c.activation, "use_sync_bn": True},
    }
    if detector == "retinanet" and c.mobile:
        model["head"] = {"num_filters": 48, "use_separable_conv": True}
    if detector in ("maskrcnn", "cascadercnn"):
        model["include_mask"] = True
    if detector == "cascadercnn":
        model["roi_sampler"] = {"cascade_iou_thresholds": [0.6, 0.7]}
        model["detection_head"] = {"class_agnostic_bbox_pred": True, "cascade_class_ensemble": True}
    rates = [r.learning_rate / 10 ** i for i in range(len(r.decay_before_end) + 1)]
    return {
        "task": {
            "annotation_file": "coco/instances_val2017.json",
            "model": model,
            "losses": {"l2_weight_decay": r.l2_weight_decay},
            "train_data": {"input_path": "coco/train*", "global_batch_size": r.batch_size,
                           "parser": {"aug_rand_hflip": r.horizontal_flips, "aug_scale_min": r.scale_jitter[0],
                                      "aug_scale_max": r.scale_jitter[1]}},
            "validation_data": {"input_path": "coco/val*", "global_batch_size": r.eval_batch_size},
        },
        "trainer": {
            "train_steps": r.epochs * steps,
            "validation_steps": r.val_examples // r.eval_batch_size,
            "validation_interval": steps,
            "steps_per_loop": steps,
            "summary_interval": steps,
            "checkpoint_interval": steps,
            "optimizer_config": {
                "optimizer": {"type": "sgd", "sgd": {"momentum": r.momentum}},
                "learning_rate": {"type": "stepwise", "stepwise": {
                    "boundaries": [(r.epochs - before) * steps for before in r.decay_before_end],
                    "values": [float(f"{rate:.6g}") for rate in rates]}},
                "warmup": {"type": "linear", "linear": {"warmup_steps": r.warmup_steps,
                                                        "warmup_learning_rate": r.warmup_learning_rate}},
            },
        },
    }


def _experiment_yaml(c: _Context, detector: str) -> str:
    r = c.recipe
    header = (
        f"# {_DETECTOR_TITLES[detector]} with {c.what} as its backbone\n"
        f"# ({c.backbone_type}: {c.scaling_name} scaling, "
        f"{c.input_size}x{c.input_size} input, {c.params:,} backbone parameters).\n"
        f"# Experiment {c.experiments[detector]}, registered by {c.module}.py; train it as README.md says.\n"
        f"# Recipe: {r.epochs} epochs of {r.steps_per_epoch} steps (batch {r.batch_size}), the learning rate cut "
        f"tenfold {' and '.join(map(str, r.decay_before_end))} epochs\n"
        f"# before the end, horizontal flips, scale jitter {r.scale_jitter[0]}-{r.scale_jitter[1]}, images resized "
        f"on the long side and padded square.\n")
    return header + yaml.safe_dump(_experiment_config(c, detector), sort_keys=False, default_flow_style=None)


def _readme(c: _Context) -> str:
    r = c.recipe
    backbone = model_garden_backbone(c.genome)
    rows = "\n".join(f"| {_DETECTOR_TITLES[name]} | `{name}.yaml` | `{exp}` |" for name, exp in c.experiments.items())
    commands = "\n".join(f"    python train.py --experiment={exp} --config_file={name}.yaml \\\n"
                         f"        --mode=train_and_eval --model_dir=runs/{name}"
                         for name, exp in c.experiments.items())
    first = next(iter(c.experiments))
    fields = ", ".join(f"`{key}` {value}" for key, value in c.backbone_fields().items())
    override = (f"    python train.py --experiment={c.experiments[first]} --config_file={first}.yaml \\\n"
                f"        --mode=train_and_eval --model_dir=runs/{first} \\\n"
                f"        --params_override=\"task.train_data.input_path=/data/coco/train*,"
                f"task.model.backbone.{c.backbone_type}.stochastic_depth_drop_rate=0.2\"")
    blocks = [
        f"# {c.what} in the TF Model Garden",
        _fill(f"Written by `spinenas export --model-garden`. The backbone is the Model Garden's own "
              f"`{backbone.name}` built with this genome's `block_specs` (the genome is `../genome.yaml` when "
              f"exported from a study), at {c.scaling_name} scaling ({fields}) and {c.input_size}x{c.input_size} "
              f"input: {c.params:,} backbone parameters, batch-norm statistics included."),
        f"| detector | config | experiment |\n|---|---|---|\n{rows}",
        _fill(f"- `{c.module}.py` registers the backbone type `{c.backbone_type}` with the Model Garden's "
              f"backbone factory and the experiments above with its experiment factory. Each experiment is the "
              f"Model Garden's SpineNet experiment of that detector with a backbone config that also knows "
              f"`{c.backbone_type}`.", indent="  ")
        + "\n" + _fill("- `train.py` imports it, then runs `official.vision.train` (which imports no module of "
                       "yours) with the flags you give it.", indent="  "),
        "## Train",
        _fill(f"Install the Model Garden (tested with `tf-models-official=={MODEL_GARDEN_VERSION}`), put COCO "
              f"as TFRecords where the configs look (`coco/train*`, `coco/val*`, `coco/instances_val2017.json`, "
              f"or point `task.train_data.input_path`, `task.validation_data.input_path` and "
              f"`task.annotation_file` elsewhere with `--params_override`), then, from this folder:"),
        commands,
        _fill(f"Other Model Garden programs read these experiments once `{c.module}` is imported: run them with "
              f"this folder on `PYTHONPATH` and import the module first, as `train.py` does."),
        _fill(f"The configs carry the recipe the TF-Vision Model Garden gives for detectors trained from "
              f"scratch: {r.epochs} epochs of {r.steps_per_epoch} steps at batch {r.batch_size} (SGD, momentum "
              f"{r.momentum}, learning rate {r.learning_rate} after a {r.warmup_steps}-step linear warm-up, cut "
              f"tenfold {' and '.join(map(str, r.decay_before_end))} epochs before the end), horizontal flips, "
              f"scale jitter {r.scale_jitter[0]} to {r.scale_jitter[1]}, L2 weight decay {r.l2_weight_decay:g}, "
              f"{c.activation} activations, and square inputs (the long side resized, the short side padded). "
              f"Change any of it with `--params_override`, for instance"),
        override,
        "## Back to spinenas",
        _fill("`spinenas decode --weights` loads the trained backbone from the model directory's latest "
              "checkpoint into the decoded genome (with the genome of the export, `../genome.yaml` from a study):"),
        # The checkpoint does not hold the activation: the command names the one the model trains with.
        f"    spinenas decode --genome ../genome.yaml --model-id {c.model_id} --input-size {c.input_size} "
        f"--activation {c.activation} --weights runs/{first}/",
    ]
    return "\n\n".join(blocks) + "\n"


def _fill(text: str, indent: str = "") -> str:
    return textwrap.fill(text, width=100, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


__all__ = ["MODEL_GARDEN_VERSION", "ModelGardenExport", "Recipe",
           "SEED_RECIPE", "model_garden_scaling", "plan_model_garden"]
