"""Read and write TF Model Garden checkpoints of SpineNet and Mobile SpineNet backbones.

A checkpoint the Model Garden's trainer writes is TensorFlow's object-based
format: every variable is named by its path through the saved objects, such
as ``backbone/layer_with_weights-2/_conv1/kernel`` (a trainer's checkpoint
tracks the backbone at the top as ``backbone``; one of a whole model has it
under ``model/backbone/``). :func:`read_model_garden_checkpoint` finds the
backbone in such a checkpoint, checks that its variables are exactly those of
the genome at the given scaling (:func:`~spinenet.model_garden_layout.model_garden_layout`
says which decoded weight each one is) and returns their values;
:func:`load_model_garden_checkpoint` sets them on a decoded backbone, and
``decode(..., weights=PATH)`` does both. :func:`save_model_garden_checkpoint`
writes a decoded backbone's weights under the Model Garden's paths, which the
Model Garden's own backbone of the same architecture restores.

The checkpoint is read with TensorFlow's own reader (``tf.train.load_checkpoint``);
nothing of the Model Garden is imported.

Examples:
    >>> from spinenet import build_spinenet
    >>> backbone = build_spinenet("49S", input_shape=(128, 128, 3))  # doctest: +SKIP
    >>> save_model_garden_checkpoint(backbone, "runs/ckpt/backbone")  # doctest: +SKIP
    'runs/ckpt/backbone'
    >>> build_spinenet("49S", weights="runs/ckpt")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional

import numpy as np
import tensorflow as tf

from search_spaces.genome import Genome
from spinenet.model_garden_layout import LayoutVariable, model_garden_layout
from spinenet.scaling import DecodeError, Scaling

# What an object-based checkpoint appends to a variable's object path.
_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
# Optimizer slots (momentum and the like) hang under the variable they belong to.
_SLOT = "/.OPTIMIZER_SLOT/"
_BACKBONE_NAMES = ("backbone", "_backbone")
# A checkpoint is a prefix; the reader also gets handed one of its files.
_CHECKPOINT_FILE = re.compile(r"\.(index|data-\d{5}-of-\d{5})$")


class CheckpointError(DecodeError):
    """A path that holds no readable TensorFlow checkpoint."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint whose backbone variables do not fit the decoded backbone (names the first that does not)."""


@dataclasses.dataclass(frozen=True)
class BackboneWeights:
    """A Model Garden backbone's variables read from a checkpoint, checked against a genome and scaling.

    ``path`` is the checkpoint read (a prefix), ``prefix`` the backbone's place
    in it (``"backbone/"``, ``"model/backbone/"``, or ``""`` for weights saved
    from the backbone itself), and ``values`` maps each decoded
    ``(layer name, weight)`` to its array.
    """

    path: str
    prefix: str
    values: dict

    def assign_to(self, backbone) -> None:
        """Set every weight of ``backbone`` (decoded from the same genome and scaling) to its value."""
        targets = _model_variables(backbone)
        missing = [key for key in self.values if key not in targets]
        if missing:
            raise CheckpointMismatch(f"the backbone has no weight {'/'.join(missing[0])} "
                                     f"(read from checkpoint {self.path}); decode it from the same genome")
        unset = [key for key in targets if key not in self.values]
        if unset:
            raise CheckpointMismatch(f"checkpoint {self.path} has no value for the backbone's weight "
                                     f"{'/'.join(unset[0])} (and {len(unset) - 1} more)")
        for key, value in self.values.items():
            variable = targets[key]
            if tuple(variable.shape) != value.shape:
                raise CheckpointMismatch(f"the backbone's weight {'/'.join(key)} has shape {tuple(variable.shape)}, "
                                         f"checkpoint {self.path} holds {value.shape} for it")
        for key, value in self.values.items():
            targets[key].assign(value.astype(targets[key].dtype.as_numpy_dtype))


def _model_variables(backbone) -> dict:
    """Every variable of a decoded backbone by ``(layer name, weight)``; raises if one has two names."""
    found = {}
    for layer in backbone.layers:
        for variable in layer.weights:
            # tf_keras names a layer's variables "<layer>/<weight>:0"; the weight is the attribute too.
            weight = variable.name.split("/")[-1].split(":")[0]
            found[(layer.name, weight)] = variable
    if len(found) != len(backbone.weights):
        raise CheckpointMismatch(f"the backbone's {len(backbone.weights)} weights have only {len(found)} distinct "
                                 "layer/weight names; is it a backbone decode() built?")
    return found


def _backbone_setup(backbone, genome: Optional[Genome], scaling: Optional[Scaling]):
    genome = genome if genome is not None else getattr(backbone, "genome", None)
    scaling = scaling if scaling is not None else getattr(backbone, "scaling", None)
    if genome is None or scaling is None:
        raise CheckpointError(f"{type(backbone).__name__} {getattr(backbone, 'name', '')!r} is not a backbone "
                              "decode() built (it has no genome and scaling); pass genome= and scaling=")
    return genome, scaling, int(backbone.input_shape[-1])


def checkpoint_path(path: str) -> str:
    """The checkpoint prefix ``path`` stands for: a folder's latest checkpoint, a prefix, or one of its files."""
    path = os.fspath(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is not None:
            return latest
        # No state file (a checkpoint written by Checkpoint.write): a lone checkpoint is unambiguous.
        found = sorted(name[:-len(".index")] for name in os.listdir(path) if name.endswith(".index"))
        if len(found) == 1:
            return os.path.join(path, found[0])
        if not found:
            raise CheckpointError(f"weights {path}: the folder holds no TensorFlow checkpoint (no .index file)")
        raise CheckpointError(f"weights {path}: the folder holds {len(found)} checkpoints ({', '.join(found)}) "
                              "and no 'checkpoint' state file saying which is the latest; give its prefix")
    if os.path.isfile(path) and _CHECKPOINT_FILE.search(path):
        return _CHECKPOINT_FILE.sub("", path)
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise CheckpointError(f"weights {path}: no such checkpoint (neither a folder, nor a prefix with a "
                              f"{os.path.basename(path)}.index file)")
    return path


def _read_variables(path: str):
    """The reader and ``{object path: shape}`` of every variable's value (slots left out) in a checkpoint."""
    try:
        reader = tf.train.load_checkpoint(path)
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as err:
        reason = str(getattr(err, "message", err)).strip().splitlines()[0]
        hint = (" (a Keras model or weights file: load it with tf_keras instead)"
                if path.endswith((".keras", ".h5")) else "")
        raise CheckpointError(f"weights {path}: not a TensorFlow checkpoint{hint}: {reason}") from None
    values = {key[:-len(_VALUE)]: tuple(shape) for key, shape in shapes.items()
              if key.endswith(_VALUE) and _SLOT not in key}
    return reader, values


def _prefixes(names, first: LayoutVariable) -> list[str]:
    """Where a functional backbone may sit: the paths above each ``layer_with_weights-0/kernel``, best first."""
    found = [name[:-len(first.path)] for name in names
             if name == first.path or name.endswith("/" + first.path)]

    def rank(prefix):
        last = prefix.rstrip("/").rsplit("/", 1)[-1]
        return last not in _BACKBONE_NAMES, prefix.count("/"), prefix

    return sorted(found, key=rank)


def _natural(text: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _mismatch(path: str, prefix: str, names: dict, layout) -> Optional[str]:
    """Why the variables under ``prefix`` are not exactly ``layout`` (the first that does not fit), or None."""
    for variable in layout:
        name = prefix + variable.path
        if name not in names:
            return (f"checkpoint {path} has no variable {name!r}, where the decoded backbone's "
                    f"{variable.layer}/{variable.weight} of shape {variable.shape} belongs")
        if names[name] != variable.shape:
            return (f"checkpoint variable {name!r} has shape {names[name]}, but the decoded backbone's "
                    f"{variable.layer}/{variable.weight} there has {variable.shape}")
    wanted = {prefix + variable.path for variable in layout}
    extra = sorted((name for name in names if name.startswith(prefix) and name not in wanted), key=_natural)
    if extra:
        return (f"checkpoint variable {extra[0]!r} (shape {names[extra[0]]}) has no place in the decoded "
                f"backbone: {len(layout) + len(extra)} variables under {prefix or 'the root'!r}, "
                f"the backbone has {len(layout)}")
    return None


def read_model_garden_checkpoint(path: str, genome: Genome, scaling: Scaling,
                                 input_channels: int = 3) -> BackboneWeights:
    """The backbone weights in the Model Garden checkpoint at ``path``, checked against ``genome`` at ``scaling``.

    ``path`` is a checkpoint prefix (``ckpt-12``), one of its files, or a
    folder (its latest checkpoint). The backbone is the functional model in it
    whose variables are exactly those of the Model Garden's backbone of the
    genome (preferring one tracked as ``backbone``). Raises
    :class:`CheckpointError` for a path that is no checkpoint and
    :class:`CheckpointMismatch`, naming the first variable that does not fit,
    for a checkpoint of another architecture, scaling or input, or one without
    a backbone. The activation and batch-norm settings are not stored, so they
    must be given to the decoder as the checkpoint was trained (the Model
    Garden's SpineNet COCO configs use swish).
    """
    layout = model_garden_layout(genome, scaling, input_channels)
    path = checkpoint_path(path)
    reader, names = _read_variables(path)
    prefixes = _prefixes(names, layout[0])
    if not prefixes:
        sample = ", ".join(sorted(names, key=_natural)[:3]) or "none"
        raise CheckpointMismatch(
            f"checkpoint {path} holds no Model Garden backbone: no variable ends in {layout[0].path!r} "
            f"(the stem convolution); its {len(names)} variables include {sample}")
    reasons = {prefix: _mismatch(path, prefix, names, layout) for prefix in prefixes}
    fitting = [prefix for prefix in prefixes if reasons[prefix] is None]
    if not fitting:
        raise CheckpointMismatch(reasons[prefixes[0]] + _scaling_hint(scaling))
    prefix = fitting[0]
    values = {}
    for variable in layout:
        name = prefix + variable.path + _VALUE
        try:  # the index was read; a data shard that is missing or damaged shows only now
            values[(variable.layer, variable.weight)] = np.asarray(reader.get_tensor(name))
        except (tf.errors.OpError, IndexError) as err:  # a truncated shard raises IndexError from the reader
            reason = (getattr(err, "message", None) or str(err)).splitlines()[0]
            raise CheckpointError(f"checkpoint {path}: cannot read {name}: {reason}") from None
    return BackboneWeights(path, prefix, values)


def _scaling_hint(scaling: Scaling) -> str:
    return (f" (decoded at filter_size_scale={scaling.filter_size_scale}, resample_alpha={scaling.resample_alpha}, "
            f"block_repeats={scaling.block_repeats}, endpoints_num_filters={scaling.endpoints_num_filters}: "
            "was the checkpoint written for another model id or genome?)")


def load_model_garden_checkpoint(backbone, path: str, *, genome: Optional[Genome] = None,
                                 scaling: Optional[Scaling] = None) -> BackboneWeights:
    """Set every weight of a decoded ``backbone`` from the Model Garden checkpoint at ``path``; returns what was read.

    The genome and scaling are the backbone's own unless given. Nothing is
    set unless every variable fits (see :func:`read_model_garden_checkpoint`).
    """
    genome, scaling, channels = _backbone_setup(backbone, genome, scaling)
    weights = read_model_garden_checkpoint(path, genome, scaling, channels)
    weights.assign_to(backbone)
    return weights


def save_model_garden_checkpoint(backbone, path: str, *, genome: Optional[Genome] = None,
                                 scaling: Optional[Scaling] = None) -> str:
    """Write ``backbone``'s weights as a TF2 checkpoint at prefix ``path``, under the Model Garden's paths.

    The variables sit under ``backbone/``, as in a Model Garden trainer's
    checkpoint, so ``tf.train.Checkpoint(backbone=model).restore(path)``
    restores them into the Model Garden's ``SpineNet`` (or ``SpineNetMobile``)
    built with the genome's block specs and the same scaling, and a
    RetinaNet config can name it as its ``init_checkpoint``. No ``checkpoint``
    state file is written (a training folder's stays as it is); a folder with
    no state file but one checkpoint stands for that checkpoint in
    :func:`checkpoint_path`. Returns the prefix written.
    """
    genome, scaling, channels = _backbone_setup(backbone, genome, scaling)
    layout = model_garden_layout(genome, scaling, channels)
    variables = _model_variables(backbone)
    placed = {(v.layer, v.weight) for v in layout}
    unplaced = [key for key in variables if key not in placed]
    if unplaced:
        raise CheckpointMismatch(f"the backbone's weight {'/'.join(unplaced[0])} has no place in the Model "
                                 "Garden's backbone of its genome")
    root = tf.Module()
    for variable in layout:
        source = variables.get((variable.layer, variable.weight))
        if source is None or tuple(source.shape) != variable.shape:
            found = "none" if source is None else tuple(source.shape)
            raise CheckpointMismatch(f"the backbone's weight {variable.layer}/{variable.weight} has shape {found}, "
                                     f"the Model Garden's {variable.path} needs {variable.shape}")
        _place(root, variable.path, source)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    checkpoint = tf.train.Checkpoint(backbone=root)
    # A tf.train.Checkpoint that restores expects a save counter; write() stores one only once it exists.
    checkpoint.save_counter.assign(1)
    return checkpoint.write(path)


def _place(root, path: str, variable) -> None:
    # The path's parts (layer_with_weights-3, _conv1) are not Python names, but setattr on a
    # tf.Module tracks any attribute name, which is what the checkpoint's object graph records.
    *parents, leaf = path.split("/")
    node = root
    for part in parents:
        child = node.__dict__.get(part)
        if child is None:
            child = tf.Module()
            setattr(node, part, child)
        node = child
    setattr(node, leaf, variable)


__all__ = ["BackboneWeights", "CheckpointError", "CheckpointMismatch", "checkpoint_path",
           "load_model_garden_checkpoint", "read_model_garden_checkpoint", "save_model_garden_checkpoint"]
