"""The one training loop both tasks share: its step, optimizer and evaluation cadence; the precision a study holds."""

import json
import os
import subprocess
import sys

import numpy as np
import optuna
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny models without batch norm: a replica's batch statistics would differ from the whole batch's, and
# these tests compare a split batch with the whole one. Both tasks' real train steps are used.
MODELS = r'''
import contextlib

import numpy as np
import tensorflow as tf
import tf_keras

from nas.experiment import load_train_config
from nas.tasks.classification.train import classification_loss
from nas.tasks.detection.anchors import generate_anchors
from nas.tasks.detection.train import detection_loss
from nas.tasks.training import epoch_batches, make_optimizer, make_train_step, precision_policy

ANCHORS = generate_anchors(16, 3, 4, 1, (1.0,), 4.0)


def classifier(side, classes=3):
    inputs = tf_keras.Input((side, side, 3))
    x = tf_keras.layers.Dense(8, activation="relu")(tf_keras.layers.Flatten()(inputs))
    return tf_keras.Model(inputs, tf_keras.layers.Dense(classes, dtype="float32")(x))


def detector(side, classes=3):
    inputs = tf_keras.Input((side, side, 3))
    x = tf_keras.layers.Dense(8, activation="relu")(tf_keras.layers.Flatten()(inputs))
    n = len(ANCHORS)
    logits = tf_keras.layers.Dense(n * classes, dtype="float32")(x)
    deltas = tf_keras.layers.Dense(n * 4, dtype="float32")(x)
    logits = tf_keras.layers.Reshape((n, classes), dtype="float32")(logits)
    deltas = tf_keras.layers.Reshape((n, 4), dtype="float32")(deltas)
    return tf_keras.Model(inputs, {"classes": logits, "boxes": deltas})


def batch(task, size=4, side=16, scale=1.0, seed=0):
    """``size`` different images; every image holds the same boxes, so each replica has as many positives."""
    images = scale * np.random.default_rng(seed).uniform(0, 1, (size, side, side, 3)).astype("float32")
    if task == "classification":
        return images, np.arange(size, dtype="int32") % 3
    boxes = np.tile(np.array([[[2, 2, 10, 10], [4, 6, 14, 15]]], "float32"), (size, 1, 1))
    return images, {"boxes": boxes, "classes": np.tile(np.array([[1, 0]], "int32"), (size, 1))}


def train_step(task, precision, clip, strategy=None, weights=None, side=16):
    """(model, optimizer, step) of the shared train step with ``task``'s loss on a tiny model, ``weights`` when given."""
    settings = [f"task.training.gradient_clip_norm={clip}", f"task.training.precision={precision}"]
    config = load_train_config(None, settings, task=task)
    training = config.task.training
    with precision_policy(precision), strategy.scope() if strategy is not None else contextlib.nullcontext():
        tf_keras.utils.set_random_seed(0)
        model = (classifier if task == "classification" else detector)(side)
        if weights is not None:
            model.set_weights(weights)
        optimizer = make_optimizer(0.5, 0.9, model.trainable_variables)  # the SGD every task trains with
    if task == "classification":
        loss = classification_loss(0.0)
    else:
        loss = detection_loss(tf.constant(ANCHORS), config.task)
    return model, optimizer, make_train_step(model, optimizer, loss, training, strategy)

'''

TWO_REPLICAS = MODELS + r'''
import json

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {}
for task in ("classification", "detection"):
    inputs = batch(task)
    clip = 1e-3
    one, _, step = train_step(task, "float32", clip)
    start = one.get_weights()
    step(*inputs)
    two, _, step = train_step(task, "float32", clip, strategy, start)
    data = epoch_batches(tf.data.Dataset.from_tensor_slices(inputs).batch(len(inputs[0])), 1, strategy)
    step(*next(iter(data)))
    # SGD's first step moves the weights by learning_rate (0.5) times the clipped gradient.
    out[task] = {"replicas": strategy.num_replicas_in_sync, "clip": clip,
                 "step_norm": float(tf.linalg.global_norm([a - b for a, b in zip(one.get_weights(), start)])) / 0.5,
                 "moved": max(float(np.abs(a - b).max()) for a, b in zip(one.get_weights(), start)),
                 "difference": max(float(np.abs(a - b).max()) for a, b in zip(one.get_weights(), two.get_weights()))}
print(json.dumps(out))
'''


def test_mirrored_clipping_clips_the_summed_gradient():
    # Regression: under a mirrored strategy each replica clipped its share of the gradient to
    # clip / replicas before the sum, which is not the global norm of the summed gradient. Two
    # logical CPUs must be configured before TensorFlow initialises its devices: a process of its own.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", TWO_REPLICAS], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for task, result in results.items():
        assert result["replicas"] == 2, task
        assert result["step_norm"] == pytest.approx(result["clip"], rel=1e-3), (task, result)  # the clip binds
        assert result["moved"] > 1e-5, (task, result)  # the step changed the weights
        assert result["difference"] < 1e-7 + 1e-3 * result["moved"], (task, result)


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_float16_steps_through_a_dynamic_loss_scale(task):
    # A finite loss alone does not show the loss scale works: the step must scale the loss, unscale the
    # gradients (the same update as float32), and skip a step whose scaled gradients overflow float16.
    import tensorflow as tf
    import tf_keras

    models = {}
    exec(MODELS, models)
    for scale, overflows in ((1.0, False), (30.0, True)):  # x30: finite in float16, its gradient times 2**15 not
        inputs = models["batch"](task, scale=scale)
        single, _, step = models["train_step"](task, "float32", "null")
        start = single.get_weights()
        assert np.isfinite(float(step(*inputs)["loss"]))
        mixed, optimizer, step = models["train_step"](task, "mixed_float16", "null", weights=start)
        assert isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer) and optimizer.dynamic
        assert float(optimizer.loss_scale) == 2.0 ** 15
        assert np.isfinite(float(step(*inputs)["loss"]))
        exact = [a - b for a, b in zip(single.get_weights(), start)]
        moved = [a - b for a, b in zip(mixed.get_weights(), start)]
        if overflows:  # skipped, and the next step scales by half as much
            assert float(optimizer.loss_scale) == 2.0 ** 14
            assert all(not np.any(m) for m in moved) and float(tf.linalg.global_norm(exact)) > 0
        else:  # a missing scale or unscale would be off by 2**15
            assert float(optimizer.loss_scale) == 2.0 ** 15
            error = float(tf.linalg.global_norm([a - b for a, b in zip(exact, moved)]))
            assert error < 0.01 * float(tf.linalg.global_norm(exact))


def test_the_legacy_optimizer_still_makes_its_slots_before_the_first_step():
    # tf_keras' legacy optimizer has no public way to make its hyperparameters, step counter and slots up
    # front, so create_optimizer_weights calls its private _create_all_weights. If tf_keras renames or changes
    # it, this fails here instead of every trial quietly tracing its train step twice.
    import tensorflow as tf
    import tf_keras

    from nas.tasks.training import make_optimizer, precision_policy

    assert callable(getattr(tf_keras.optimizers.legacy.Optimizer, "_create_all_weights", None)), \
        "tf_keras.optimizers.legacy.Optimizer._create_all_weights is gone: see nas.tasks.training.create_optimizer_weights"
    for precision in ("float32", "mixed_float16"):
        with precision_policy(precision):
            model = tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Dense(2, dtype="float32")])
            optimizer = make_optimizer(0.1, 0.9, model.trainable_variables)
        assert isinstance(optimizer, tf_keras.optimizers.legacy.Optimizer), precision
        sgd = getattr(optimizer, "inner_optimizer", optimizer)
        assert isinstance(sgd, tf_keras.optimizers.legacy.SGD), precision
        for variable in model.trainable_variables:
            assert sgd.get_slot(variable, "momentum").shape == variable.shape, precision
        made = len(optimizer.variables())
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(tf.ones([4, 3])) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        assert len(optimizer.variables()) == made, precision  # the step made no variable of its own
        assert int(optimizer.iterations) == 1, precision


def _tiny_task(images=12, classes=3):
    """A TaskTraining of a dense classifier on random images: the shared loop without a decoded genome."""
    import tensorflow as tf
    import tf_keras

    from nas.tasks.classification.train import classification_loss
    from nas.tasks.training import TaskData, TaskTraining

    x = np.random.default_rng(0).uniform(-1, 1, (images, 8, 8, 3)).astype("float32")
    y = np.arange(images, dtype="int32") % classes

    def data():
        train = tf.data.Dataset.from_tensor_slices((x, y)).batch(4, drop_remainder=True)
        return TaskData(train, tf.data.Dataset.from_tensor_slices((x, y)).batch(4), images, classes)

    def build_model(num_classes):
        inputs = tf_keras.Input((8, 8, 3))
        backbone = tf_keras.Model(inputs, tf_keras.layers.Flatten()(inputs))
        return tf_keras.Model(inputs, tf_keras.layers.Dense(num_classes)(backbone(inputs))), backbone

    def evaluator(model, val):
        return lambda: {"top1": float(np.mean([float(tf.reduce_mean(tf.cast(
            tf.argmax(model(a), -1, output_type=tf.int32) == b, tf.float32))) for a, b in val]))}

    return TaskTraining(data=data, build_model=build_model, loss=classification_loss(0.0), evaluator=evaluator,
                        summarise=lambda means: {"train_loss": means["loss"]})


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_every_epoch_auto_evaluates_each_epoch_only_for_a_listener(task):
    # Both tasks' configs default to auto, and the one loop reads it the same way for each.
    from nas.experiment import load_train_config
    from nas.tasks.training import train_genome

    config = load_train_config(None, ["task.training.epochs=3", "task.training.batch_size=4",
                                      "task.training.precision=float32", "task.training.warmup_steps=0"], task=task)
    assert config.task.evaluation.every_epoch == "auto"
    quiet = train_genome(None, config, _tiny_task())
    assert [h["epoch"] for h in quiet["history"]] == [3] and quiet["steps"] == 9 and quiet["num_classes"] == 3
    reports = []
    heard = train_genome(None, config, _tiny_task(), lambda step, metrics: reports.append(step))
    assert reports == [3, 6, 9] and [h["epoch"] for h in heard["history"]] == [1, 2, 3]
    assert heard["top1"] == quiet["top1"] and heard["train_loss"] == quiet["train_loss"]  # the same seeded run
    assert set(heard) >= {"steps", "epochs", "params", "backbone_params", "train_images_per_s", "wall_time_s",
                          "timing", "history", "precision"}


def test_a_study_refuses_a_worker_where_auto_means_another_precision(tmp_path, monkeypatch):
    # Regression: precision auto resolves per machine and the fingerprint holds the word "auto", so one
    # study on a mixed cluster held trials trained at three precisions.
    from optuna.trial import TrialState

    from nas.experiment import load_experiment
    from nas.search.driver import run_search
    from nas.search.precision import PrecisionMismatch
    from tests.test_search import fake_metrics, fake_training, tiny_experiment

    monkeypatch.chdir(tmp_path)
    machine = {"precision": "float32"}
    fake_training(monkeypatch, lambda *args, **kwargs: {**fake_metrics(0.3), "precision": machine["precision"]})
    path = tiny_experiment(tmp_path)
    study = run_search(load_experiment(path, ["search.n_trials=1"]), log=lambda line: None)
    assert study.user_attrs["auto_precision"] == "float32"
    assert [t.user_attrs["precision"] for t in study.trials] == ["float32"]

    machine["precision"] = "mixed_bfloat16"  # a worker on a machine with native bfloat16 joins
    with pytest.raises(PrecisionMismatch, match=r"^task.training.precision: auto means mixed_bfloat16 on .*, but "
                                                r"study 'tiny' trains at float32: run this worker") as err:
        run_search(load_experiment(path, ["search.n_trials=3"]), log=lambda line: None)
    assert "\n" not in str(err.value)
    study = optuna_study(path)
    last = study.trials[-1]
    assert last.state == TrialState.FAIL and last.user_attrs["precision"] == "mixed_bfloat16"
    assert last.user_attrs["fail_reason"] == str(err.value)
    assert {t.user_attrs["precision"] for t in study.trials if t.state == TrialState.COMPLETE} == {"float32"}

    machine["precision"] = "float32"  # back on a float32 machine the search goes on
    study = run_search(load_experiment(path, ["search.n_trials=2"]), log=lambda line: None)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2


def test_an_explicit_precision_is_recorded_and_never_refused():
    import optuna

    from nas.search.precision import record_precision

    study = optuna.create_study()
    for setting, resolved in (("float32", "float32"), ("mixed_bfloat16", "mixed_bfloat16"), ("auto", "float32")):
        trial = study.ask()
        record_precision(study, trial, setting, resolved)
        assert trial.user_attrs["precision"] == resolved
    assert study.user_attrs["auto_precision"] == "float32"  # only auto is stored on the study
    trial = study.ask()
    record_precision(study, trial, "auto", None)  # a task that does not say: nothing to record
    assert "precision" not in trial.user_attrs


def optuna_study(path):
    from nas.experiment import load_experiment
    from nas.search.study import open_study

    return open_study(load_experiment(path))


def test_a_fidelity_study_refuses_a_worker_where_auto_means_another_precision(tmp_path, monkeypatch):
    from optuna.trial import TrialState

    from nas.experiment import load_experiment
    from nas.fidelity import run_fidelity
    from nas.search.precision import PrecisionMismatch
    from tests.test_fidelity import fidelity_experiment
    from tests.test_search import fake_metrics, fake_training

    monkeypatch.chdir(tmp_path)
    machine = {"precision": "float32"}

    def fake_train(genome, config, out_dir, report=None):
        if len(trained) == 1:
            machine["precision"] = "mixed_float16"  # the second item goes to a GPU worker
        trained.append(machine["precision"])
        return {**fake_metrics(0.3), "precision": machine["precision"]}

    trained = []
    fake_training(monkeypatch, fake_train)
    experiment = load_experiment(fidelity_experiment(tmp_path))
    with pytest.raises(PrecisionMismatch, match="auto means mixed_float16 on .* trains at float32"):
        run_fidelity(experiment, 1, log=lambda line: None)
    study = optuna.load_study(study_name="tiny-fidelity", storage=f"sqlite:///{tmp_path}/study.db")
    assert [t.state for t in study.trials][:2] == [TrialState.COMPLETE, TrialState.FAIL]
    assert [t.user_attrs["precision"] for t in study.trials][:2] == ["float32", "mixed_float16"]
    assert not study.trials[1].user_attrs.get("training_failed")  # its item is queued again
