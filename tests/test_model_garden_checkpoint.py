"""TF Model Garden checkpoints loaded into decoded backbones, and decoded backbones written as such checkpoints.

The Model Garden (tests/model_garden.py) builds its own SpineNet and
SpineNetMobile at 128x128 (the smallest input whose level-7 features are 1x1)
with random values in every variable, batch-norm moving statistics included.
Its checkpoints must load into ``decode(..., weights=)`` and give its outputs
in inference mode, and a decoded backbone's checkpoint must restore into its
model, every variable matched, with the same outputs. Bad checkpoints raise
one error naming the first variable that does not fit.
"""

from __future__ import annotations

import json
import os

import numpy as np
import optuna
import pytest
import tensorflow as tf
import tf_keras

from nas.cli import main
from search_spaces.genome import Genome
from spinenet import SPINENET_49
from spinenet.decoder import build_spinenet, build_spinenet_mobile, decode
from spinenet.model_garden_checkpoint import (CheckpointError, CheckpointMismatch, load_model_garden_checkpoint,
                                              read_model_garden_checkpoint, save_model_garden_checkpoint)
from spinenet.model_garden_layout import model_garden_layout
from spinenet.scaling import DecodeError, Scaling
from spinenet.specs import SPINENET_MOBILE_49, scaling_for
from tests import model_garden

SIZE = 128
TOLERANCE = 1e-4
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


# ------------------------------------------------------------------ helpers
def randomize(model, seed: int) -> None:
    """Random values in every variable: kernels at 1/sqrt(fan-in), gammas, betas and moving statistics."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        weight = variable.name.split("/")[-1].split(":")[0]
        shape = tuple(variable.shape)
        if weight in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif weight in ("beta", "moving_mean", "bias"):
            value = rng.normal(0.0, 0.2, shape)
        else:
            fan_in = np.prod(shape[:2]) if weight == "depthwise_kernel" else np.prod(shape[:-1])
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        variable.assign(value.astype(np.float32))


def image(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(batch, SIZE, SIZE, 3)).astype(np.float32)


def run(model) -> dict:
    return {level: tensor.numpy() for level, tensor in model(image(), training=False).items()}


def relative_error(ours: dict, reference: dict) -> float:
    """The largest absolute difference of any endpoint, relative to that endpoint's largest value."""
    assert sorted(ours) == sorted(reference) == ["3", "4", "5", "6", "7"]
    errors = []
    for level, expected in reference.items():
        assert ours[level].shape == expected.shape, level
        assert expected.std() > 0, f"level {level} is constant: the random weights tell nothing"
        errors.append(float(np.max(np.abs(ours[level] - expected)) / np.max(np.abs(expected))))
    return max(errors)


def decoded(model_id: str, **options):
    """spinenas's backbone of a model id (``mobile-49`` style for Mobile SpineNet) at SIZE."""
    if model_id.startswith("mobile-"):
        return build_spinenet_mobile(model_id[len("mobile-"):], input_shape=(SIZE, SIZE, 3), **options)
    return build_spinenet(model_id, input_shape=(SIZE, SIZE, 3), **options)


def checkpoint_shapes(path: str) -> dict:
    reader = tf.train.load_checkpoint(path)
    return {key[:-len(VALUE)]: tuple(shape) for key, shape in reader.get_variable_to_shape_map().items()
            if key.endswith(VALUE)}


@pytest.fixture(scope="module")
def official():
    """The Model Garden's backbone modules (installed on first use)."""
    model_garden.on_path()
    from official.vision.modeling.backbones import spinenet, spinenet_mobile

    return spinenet, spinenet_mobile


@pytest.fixture(scope="module")
def reference(official):
    """``reference(model_id)``: the Model Garden's backbone at SIZE with random weights, built once per worker.

    Tests may restore other weights into it; each reads its outputs when it needs them.
    """
    spinenet, spinenet_mobile = official
    built = {}

    def get(model_id: str):
        if model_id not in built:
            spec = tf_keras.layers.InputSpec(shape=[None, SIZE, SIZE, 3])
            if model_id.startswith("mobile-"):
                scaling = spinenet_mobile.SCALING_MAP[model_id[len("mobile-"):]]
                model = spinenet_mobile.SpineNetMobile(input_specs=spec, min_level=3, max_level=7,
                                                       activation="swish", **scaling)
            else:
                model = spinenet.SpineNet(input_specs=spec, min_level=3, max_level=7,
                                          **spinenet.SCALING_MAP[model_id])
            randomize(model, seed=len(built))
            built[model_id] = model
        return built[model_id]

    return get


def write_reference(reference, model_id: str, folder) -> str:
    """The Model Garden backbone's checkpoint as ``tf.train.Checkpoint(backbone=model)`` writes it."""
    return tf.train.Checkpoint(backbone=reference(model_id)).write(os.path.join(str(folder), "ckpt"))


# ------------------------------------------------------------------ Model Garden -> spinenas
@pytest.mark.parametrize("model_id", ["49S", "49", "96", "mobile-49"])
def test_model_garden_checkpoint_gives_model_garden_outputs(reference, model_id, tmp_path):
    path = write_reference(reference, model_id, tmp_path)
    expected = run(reference(model_id))
    ours = decoded(model_id, weights=path)
    assert relative_error(run(ours), expected) < TOLERANCE
    assert len(ours.weights) == len(reference(model_id).weights)


@pytest.mark.parametrize("form", ["trainer", "save_weights"])
def test_backbone_is_found_inside_a_whole_model_checkpoint(reference, form, tmp_path):
    mg = reference("49S")
    if form == "trainer":
        # As the trainer saves it: the backbone inside the model, a head beside it, optimizer slots on its variables.
        holder = tf.Module()
        holder.backbone = mg
        holder.head = tf_keras.layers.Conv2D(9, 3, name="head")
        holder.head.build((None, 16, 16, 128))
        optimizer = tf_keras.optimizers.legacy.SGD(momentum=0.9)
        optimizer.apply_gradients([(tf.zeros_like(v), v) for v in mg.trainable_variables])
        tf.train.Checkpoint(model=holder, optimizer=optimizer).save(str(tmp_path / "ckpt"))
        where, prefix = str(tmp_path), "model/backbone/"  # the folder: its latest checkpoint
        names = checkpoint_shapes(tf.train.latest_checkpoint(where))
        assert any("/.OPTIMIZER_SLOT/" in name for name in names) and "model/head/kernel" in names
    else:
        where, prefix = str(tmp_path / "weights"), ""
        mg.save_weights(where)  # the TF format: the backbone is the checkpoint's root
    expected = run(mg)
    weights = read_model_garden_checkpoint(where, SPINENET_49, Scaling(**scaling_for("49S")))
    assert weights.prefix == prefix and len(weights.values) == len(mg.weights) == 650
    ours = decode(SPINENET_49, input_shape=(SIZE, SIZE, 3), **scaling_for("49S"))
    load_model_garden_checkpoint(ours, where)
    assert relative_error(run(ours), expected) < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["143", "190"])
def test_layout_is_the_model_garden_checkpoint(reference, model_id, tmp_path):
    """Every variable of the big scalings' checkpoints is in the layout at its shape, and nothing else is.

    Building them is most of their cost, so they are not run.
    """
    layout = model_garden_layout(SPINENET_49, Scaling(**scaling_for(model_id)))
    shapes = checkpoint_shapes(write_reference(reference, model_id, tmp_path))
    assert {"backbone/" + v.path: v.shape for v in layout} == {k: s for k, s in shapes.items() if k != "save_counter"}
    assert len(layout) == len(reference(model_id).weights)


# ------------------------------------------------------------------ spinenas -> Model Garden
@pytest.mark.parametrize("model_id", ["49", "mobile-49"])
def test_written_checkpoint_restores_into_the_model_garden(reference, model_id, tmp_path):
    ours = decoded(model_id)
    randomize(ours, seed=99)
    expected = run(ours)
    path = save_model_garden_checkpoint(ours, str(tmp_path / "out" / "backbone"))
    assert path == str(tmp_path / "out" / "backbone")
    mg = reference(model_id)
    status = tf.train.Checkpoint(backbone=mg).restore(path)
    status.assert_existing_objects_matched()
    status.assert_consumed()  # and every value in the checkpoint went somewhere
    assert relative_error(run(mg), expected) < TOLERANCE


def test_written_checkpoint_reads_back(tmp_path):
    ours = decode(SPINENET_MOBILE_49, input_shape=(None, None, 3), **scaling_for("mobile-49XS"))
    randomize(ours, seed=3)
    prefix = save_model_garden_checkpoint(ours, str(tmp_path / "ckpt"))
    scaling = Scaling(**scaling_for("mobile-49XS"), family="mobile")
    for form in (prefix, prefix + ".index", prefix + ".data-00000-of-00001", str(tmp_path)):
        assert read_model_garden_checkpoint(form, SPINENET_MOBILE_49, scaling).path == prefix, form
    again = decode(SPINENET_MOBILE_49, input_shape=(None, None, 3), weights=str(tmp_path),  # the folder
                   **scaling_for("mobile-49XS"))
    assert len(again.weights) == len(ours.weights) == 667
    for mine, theirs in zip(ours.weights, again.weights):
        assert mine.name == theirs.name
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    # A damaged data shard (the index still reads) is one CheckpointError naming the variable, not a traceback.
    shard = prefix + ".data-00000-of-00001"
    with open(shard, "r+b") as handle:
        handle.truncate(os.path.getsize(shard) // 2)
    with pytest.raises(CheckpointError, match=r"cannot read backbone/layer_with_weights-\d+/"):
        read_model_garden_checkpoint(prefix, SPINENET_MOBILE_49, scaling)


# ------------------------------------------------------------------ bad checkpoints
def test_another_scaling_names_the_first_mismatching_variable(reference, tmp_path):
    path = write_reference(reference, "49", tmp_path)
    with pytest.raises(CheckpointMismatch) as error:
        decode(SPINENET_49, input_shape=(SIZE, SIZE, 3), weights=path, **scaling_for("49S"))
    message = str(error.value)
    assert message.startswith("checkpoint variable 'backbone/layer_with_weights-2/_shortcut/kernel' has shape "
                              "(1, 1, 64, 256), but the decoded backbone's stem_block1_unit1_shortcut_conv/kernel "
                              "there has (1, 1, 64, 164) (decoded at filter_size_scale=0.65")
    with pytest.raises(CheckpointMismatch, match=r"'backbone/layer_with_weights-0/kernel' has shape \(7, 7, 3, 64\), "
                                                 r"but the decoded backbone's stem_conv/kernel there has \(3, 3, 3, 8\)"):
        decode(SPINENET_MOBILE_49, weights=path, **scaling_for("mobile-49"))


def _tree_checkpoint(source: str, target: str, drop=(), add=()) -> str:
    """A copy of checkpoint ``source``'s backbone variables, less ``drop`` and with ``add``, as objects."""
    reader = tf.train.load_checkpoint(source)
    names = {k[:-len(VALUE)] for k in reader.get_variable_to_shape_map() if k.startswith("backbone/")}
    backbone = tf.Module()
    for name in sorted((names - set(drop)) | set(add)):
        value = reader.get_tensor(name + VALUE) if name in names else np.zeros((3,), np.float32)
        node = backbone
        *parents, leaf = name[len("backbone/"):].split("/")
        for part in parents:
            if part not in node.__dict__:
                setattr(node, part, tf.Module())
            node = node.__dict__[part]
        setattr(node, leaf, tf.Variable(value))
    return tf.train.Checkpoint(backbone=backbone).write(target)


@pytest.mark.parametrize("drop, add, message", [
    (["backbone/layer_with_weights-1/moving_variance"], [],
     "has no variable 'backbone/layer_with_weights-1/moving_variance', where the decoded backbone's "
     "stem_bn/moving_variance of shape (64,) belongs"),
    ([], ["backbone/layer_with_weights-7/_norm9/gamma"],
     "checkpoint variable 'backbone/layer_with_weights-7/_norm9/gamma' (shape (3,)) has no place in the decoded "
     "backbone: 651 variables under 'backbone/', the backbone has 650"),
])
def test_every_variable_is_used_exactly_once(reference, tmp_path, drop, add, message):
    source = write_reference(reference, "49S", tmp_path / "source")
    path = _tree_checkpoint(source, str(tmp_path / "edited" / "ckpt"), drop, add)
    with pytest.raises(CheckpointMismatch) as error:
        read_model_garden_checkpoint(path, SPINENET_49, Scaling(**scaling_for("49S")))
    assert message in str(error.value)


def test_head_only_checkpoint(tmp_path):
    head = tf_keras.layers.Conv2D(9, 3)
    head.build((None, 8, 8, 16))
    path = tf.train.Checkpoint(head=head).write(str(tmp_path / "head"))
    with pytest.raises(CheckpointMismatch) as error:
        decode(SPINENET_49, weights=path)
    assert str(error.value) == (f"checkpoint {path} holds no Model Garden backbone: no variable ends in "
                                "'layer_with_weights-0/kernel' (the stem convolution); its 2 variables include "
                                "head/bias, head/kernel")


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"not a checkpoint\n", "notes.txt: not a TensorFlow checkpoint: "),
    ("model.keras", b"PK\x03\x04 zip", "model.keras: not a TensorFlow checkpoint (a Keras model or weights file: "
                                       "load it with tf_keras instead): "),
    ("missing", None, "missing: no such checkpoint (neither a folder, nor a prefix with a missing.index file)"),
    ("empty", "folder", "empty: the folder holds no TensorFlow checkpoint (no .index file)"),
    ("two", "two checkpoints", "two: the folder holds 2 checkpoints (a, b) and no 'checkpoint' state file saying "
                               "which is the latest; give its prefix"),
])
def test_a_path_that_is_no_checkpoint(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content == "two checkpoints":
        path.mkdir()
        (path / "a.index").write_bytes(b"")
        (path / "b.index").write_bytes(b"")
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        decode(SPINENET_49, weights=str(path))
    assert isinstance(error.value, DecodeError)
    assert str(error.value).startswith(f"weights {path}") and message in str(error.value)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------ the command line
def test_decode_command_loads_a_checkpoint(reference, tmp_path, capsys):
    path = write_reference(reference, "49S", tmp_path)
    assert main(["decode", "--model-id", "49S", "--input-size", str(SIZE), "--weights", path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["weights"] == {"checkpoint": path, "prefix": "backbone/", "variables": 650}
    assert main(["decode", "--model-id", "49", "--input-size", str(SIZE), "--weights", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spinenas: error: checkpoint variable 'backbone/layer_with_weights-2/_shortcut/kernel' "
                          "has shape (1, 1, 64, 164), but the decoded backbone's stem_block1_unit1_shortcut_conv/"
                          "kernel there has (1, 1, 64, 256)")
    assert err.count("\n") == 1


def test_export_command_writes_a_model_garden_checkpoint(reference, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(storage=storage, study_name="ckpt", direction="maximize")
    residual_stem = Genome.from_block_specs(SPINENET_49.to_block_specs(), init_block_fn="residual")
    for value, genome in enumerate([SPINENET_49, residual_stem]):
        study.add_trial(optuna.trial.create_trial(value=float(value), user_attrs={"genome": genome.to_yaml()}))
    args = ["export", "--storage", storage, "--study-name", "ckpt", "--out", str(tmp_path / "out")]
    assert main([*args, "--trial", "0", "--checkpoint"]) == 2
    assert "--checkpoint needs --model-id-scaling" in capsys.readouterr().err
    assert main([*args, "--trial", "1", "--model-id-scaling", "49S", "--checkpoint"]) == 2
    assert capsys.readouterr().err == (
        "spinenas: error: --checkpoint: trial 1 has no Model Garden checkpoint layout: the stem blocks are "
        "'residual'; the Model Garden's SpineNet builds its stem of 'bottleneck' blocks; nothing written\n")
    assert not os.path.exists(tmp_path / "out")
    args.extend(["--trial", "0"])
    assert main([*args, "--model-id-scaling", "49S", "--checkpoint"]) == 0
    assert "backbone_49S_checkpoint/ckpt (TF Model Garden checkpoint, 650 variables" in capsys.readouterr().out
    folder = tmp_path / "out" / "backbone_49S_checkpoint"
    mg = reference("49S")
    status = tf.train.Checkpoint(backbone=mg).restore(str(folder / "ckpt"))
    status.assert_consumed()
    # The .keras backbone written beside it holds the same weights, so the Model Garden's outputs are its.
    keras_backbone = tf_keras.models.load_model(str(tmp_path / "out" / "backbone_49S.keras"))
    assert relative_error(run(mg), run(keras_backbone)) < TOLERANCE
