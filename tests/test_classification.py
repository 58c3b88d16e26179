"""Classification proxy task: generated data, the image-folder reader, head cost parity, config and training."""

import json
import os
import random

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from nas.config import ConfigError
from nas.experiment import load_experiment, load_train_config
from nas.tasks import get_task
from nas.tasks.base import DataError, TrainingDiverged
from nas.tasks.classification import ClassificationTask
from nas.tasks.classification.config import SHAPE_CLASSES, DataConfig, HeadConfig, ShapesConfig
from nas.tasks.classification.cost import classification_head_cost
from nas.tasks.classification.data import make_dataset, read_image_folder
from nas.tasks.classification.dataset import prepare_data
from nas.tasks.classification.head import build_classifier, cross_entropy, top_k_hits
from nas.tasks.classification.shapes import CLASSES, write_shapes_dataset
from nas.tasks.classification.train import train_and_evaluate
from nas.tasks.training import WarmupDecay as WarmupSchedule
from spinenet import decode
from tests.conftest import TINY, random_genome

EXPERIMENTS = os.path.join(os.path.dirname(__file__), "..", "experiments")


def small_genome():
    """A level 3-5 genome: its inputs need sides divisible by 32 only, so 64x64 images work."""
    return random_genome(random.Random(7), num_intermediate=4, min_level=3, max_level=5)


def tiny_config(root, **extra):
    overrides = [f"task.data.root={root}", "task.data.image_size=64", "task.training.epochs=2",
                 "task.training.batch_size=8", "task.training.warmup_steps=2", "task.evaluation.batch_size=16",
                 *(f"model.{k}={v}" for k, v in TINY.items()), *(f"{k}={v}" for k, v in extra.items())]
    return load_train_config(task="classification", overrides=overrides)


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes") / "data"
    prepare_data(DataConfig(root=str(root), image_size=64, generate_shapes=ShapesConfig(train=30, val=10, seed=3)))
    return root


def test_task_is_registered_with_its_metrics():
    task = get_task("classification")
    assert isinstance(task, ClassificationTask)
    assert task.metrics == {"top1": "maximize", "top5": "maximize", "loss": "minimize"}
    assert task.default_objective == "top1"
    config = task.config_class()
    # The search driver reads these three.
    assert (config.data.image_size, config.training.seed, config.training.strategy) == (128, 0, "default")


def test_generated_dataset_is_deterministic_and_balanced(tmp_path):
    assert SHAPE_CLASSES == len(CLASSES) == 10
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((first, 0), (second, 0), (other, 1)):
        assert write_shapes_dataset(out, train=25, val=12, image_size=32, seed=seed) == {"train": 25, "val": 12}

    def files(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}

    assert files(first) == files(second)
    assert files(first) != files(other)
    train = read_image_folder(str(first / "train"))
    assert train.class_names == sorted(CLASSES)
    assert len(train) == 25
    assert sorted(np.bincount(train.labels).tolist()) == [2] * 5 + [3] * 5  # dealt round-robin
    val = read_image_folder(str(first / "val"), class_names=train.class_names)
    assert len(val) == 12 and val.num_classes == 10
    with Image.open(first / "train" / "small_disc" / "000000.png") as image:
        assert image.size == (32, 32) and image.mode == "RGB"


def test_prepare_data_generates_once_into_a_folder_named_after_its_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = DataConfig(image_size=64, generate_shapes=ShapesConfig(train=10, val=5, seed=2))
    assert data.resolved_root == os.path.join("runs", "data", "classes-shapes-64px-10-5-seed2")
    train, val = prepare_data(data)
    assert (len(train), len(val), train.num_classes) == (10, 5, 10)
    stamp = os.path.getmtime(os.path.join(data.resolved_root, "train"))
    prepare_data(data)  # already there: read, not regenerated
    assert os.path.getmtime(os.path.join(data.resolved_root, "train")) == stamp
    assert os.listdir(os.path.join("runs", "data")) == ["classes-shapes-64px-10-5-seed2"]  # no staging left


def _write(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_image_folder_reader_reads_grey_rgba_and_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "train" / "cat" / "rgb.png", rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    _write(tmp_path / "train" / "cat" / "photo.JPG", rng.integers(0, 255, (50, 50, 3), dtype=np.uint8))
    _write(tmp_path / "train" / "dog" / "grey.png", np.full((30, 30), 200, np.uint8))
    _write(tmp_path / "train" / "dog" / "rgba.png", np.full((64, 64, 4), 100, np.uint8))
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    _write(tmp_path / "val" / "dog" / "grey.png", np.full((32, 32), 50, np.uint8))

    train = read_image_folder(str(tmp_path / "train"))
    assert train.class_names == ["cat", "dog"] and train.labels == [0, 0, 1, 1]
    assert [os.path.basename(p) for p in train.paths] == ["photo.JPG", "rgb.png", "grey.png", "rgba.png"]
    val = read_image_folder(str(tmp_path / "val"), class_names=train.class_names)
    assert val.labels == [1] and val.summary() == "1 images, 1 of 2 classes"

    images, labels = next(iter(make_dataset(train, image_size=32, batch_size=4, training=False)))
    assert images.shape == (4, 32, 32, 3) and labels.numpy().tolist() == [0, 0, 1, 1]
    grey, rgba = images[2].numpy(), images[3].numpy()
    np.testing.assert_allclose(grey, 200 / 127.5 - 1, atol=1e-6)  # grey replicated to RGB
    np.testing.assert_allclose(rgba, 100 / 127.5 - 1, atol=1e-6)  # alpha dropped
    images, _ = next(iter(make_dataset(train, image_size=32, batch_size=4, training=True, crop_area=(0.5, 0.8))))
    assert images.shape == (4, 32, 32, 3)
    assert float(tf.reduce_min(images)) >= -1 and float(tf.reduce_max(images)) <= 1


def test_image_folder_reader_rejects_missing_and_empty_folders(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing}: image folder not found"):
        read_image_folder(str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=f"{empty}: no class folders"):
        read_image_folder(str(empty))
    (empty / "cat").mkdir()
    with pytest.raises(DataError, match=f"{empty / 'cat'}: class folder holds no images"):
        read_image_folder(str(empty))
    _write(tmp_path / "val" / "horse" / "a.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"\['horse'\] are not among the training classes"):
        read_image_folder(str(tmp_path / "val"), class_names=["cat"])
    # A user root without the generator: the missing train folder is named.
    with pytest.raises(DataError, match=f"{tmp_path / 'user' / 'train'}: image folder not found"):
        prepare_data(DataConfig(root=str(tmp_path / "user"), generate_shapes=None))


@pytest.mark.parametrize("projection", [0, 24])
def test_head_cost_equals_keras(projection):
    genome = small_genome()
    head = HeadConfig(dropout=0.2, projection_filters=projection)
    backbone = decode(genome, input_shape=(64, 64, 3), **TINY)
    model = build_classifier(backbone, 7, head)
    layers = [layer for layer in model.layers if layer is not backbone and layer.name != "image"]
    assert {layer.name for layer in layers} >= {"head_average", "head_pool", "head_logits", "head_up_l5"}
    madds = 0
    for layer in layers:
        if type(layer).__name__ == "Conv2D":
            _, h, w, c_out = layer.output_shape
            kh, kw, c_in, _ = layer.kernel.shape
            madds += h * w * kh * kw * c_in * c_out
        elif type(layer).__name__ == "Dense":
            madds += int(np.prod(layer.kernel.shape))
    cost = classification_head_cost(num_classes=7, input_size=64, min_level=3,
                                    in_channels=TINY["endpoints_num_filters"], projection_filters=projection)
    assert cost.params == sum(layer.count_params() for layer in layers)
    assert cost.params == model.count_params() - backbone.count_params()
    assert cost.multiply_adds == madds
    config = tiny_config("unused", **{"task.head.projection_filters": projection})
    assert get_task("classification").head_cost(genome, config, 7) == cost


def test_loss_and_scores():
    logits = tf.constant([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    labels = tf.constant([1, 2])
    plain = cross_entropy(logits, labels).numpy()
    expected = -np.log(tf.nn.softmax(logits).numpy()[[0, 1], [1, 2]])
    np.testing.assert_allclose(plain, expected, rtol=1e-6)
    smoothed = cross_entropy(logits, labels, 0.3).numpy()
    log_p = tf.nn.log_softmax(logits).numpy()
    target = np.full((2, 3), 0.1) + 0.7 * np.eye(3)[[1, 2]]
    np.testing.assert_allclose(smoothed, -(target * log_p).sum(1), rtol=1e-6)
    assert top_k_hits(logits, labels, 1).numpy().tolist() == [0.0, 1.0]
    assert top_k_hits(logits, labels, 2).numpy().tolist() == [1.0, 1.0]
    # Fewer classes than k: top-5 is top-3 here, so every example counts.
    assert top_k_hits(logits, tf.constant([2, 0]), 5).numpy().tolist() == [1.0, 1.0]


def test_warmup_then_cosine_schedule():
    schedule = WarmupSchedule(0.1, total_steps=110, warmup_steps=10)
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(10)) == pytest.approx(0.1)
    assert float(schedule(60)) == pytest.approx(0.05)
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-7)
    step = WarmupSchedule(0.1, total_steps=100, warmup_steps=0, schedule="step", boundaries=(0.5,), factor=0.1)
    assert float(step(49)) == pytest.approx(0.1) and float(step(50)) == pytest.approx(0.01)


def test_config_typos_and_bad_values_name_the_key():
    with pytest.raises(ConfigError, match=r"task\.training\.learnin_rate: unknown key \(did you mean 'learning_rate'\?\)"):
        load_train_config(task="classification", overrides=["task.training.learnin_rate=0.1"])
    with pytest.raises(ConfigError, match=r"task\.loss\.label_smothing: unknown key \(did you mean 'label_smoothing'"):
        load_train_config(task="classification", overrides=["task.loss.label_smothing=0.1"])
    with pytest.raises(ConfigError, match=r"task\.head\.dropuot: unknown key \(did you mean 'dropout'"):
        load_train_config(task="classification", overrides=["task.head.dropuot=0.1"])
    bad = {
        "task.loss.label_smoothing=1.5": r"label_smoothing: must be in \[0, 1\)",
        "task.head.dropout=1": r"dropout: must be in \[0, 1\)",
        "task.data.crop_area=[0.9, 0.5]": r"crop_area: need 0 < min <= max <= 1",
        "task.data.generate_shapes=null": r"root: required when generate_shapes is null",
        "task.data.generate_shapes.train=3": r"generate_shapes\.train: need at least 10 images",
        "task.training.strategy=tpu": r"'tpu' is not one of 'default', 'mirrored'",
        "task.training.schedule=cosin": r"did you mean 'cosine'",
        "task.training.epochs=0": r"epochs: must be positive",
    }
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_train_config(task="classification", overrides=[override])


def test_quickstart_experiment_loads_with_the_task_default_objective():
    experiment = load_experiment(os.path.join(EXPERIMENTS, "classification_quickstart.yaml"))
    assert experiment.task.name == "classification"
    assert experiment.search.objectives == ({"top1": "maximize"},)
    assert experiment.search_space.load_seed_genomes()[0].fingerprint is not None


def test_tiny_training_reports_scores_and_writes_outputs(shapes_root, tmp_path, monkeypatch):
    from nas.tasks import training as train
    from nas.tasks.training import compile_step, train_epochs

    steps = []  # the compiled train step, to count its traces
    monkeypatch.setattr(train, "compile_step", lambda *a, **k: steps.append(compile_step(*a, **k)) or steps[-1])
    batches = []  # how many batches the training dataset holds
    monkeypatch.setattr(train, "train_epochs", lambda step_fn, dataset, *a, **k: batches.append(
        int(dataset.cardinality())) or train_epochs(step_fn, dataset, *a, **k))
    reports = []
    config = tiny_config(shapes_root)
    result = train_and_evaluate(small_genome(), config, lambda step, metrics: reports.append((step, metrics)),
                                out_dir=str(tmp_path / "run"))
    for name in ("top1", "top5", "loss"):
        assert name in result and np.isfinite(result[name])
    assert 0 <= result["top1"] <= result["top5"] <= 1
    assert result["loss"] >= 0
    assert result["steps"] == 2 * (30 // 8) and result["num_classes"] == 10
    assert [step for step, _ in reports] == [3, 6]  # after epoch 1, then the final evaluation
    assert steps[0].experimental_get_tracing_count() == 1  # slots made before the step, not in its first trace
    assert batches == [result["steps"]]  # a finite dataset: an endless one blocked for seconds when torn down
    assert result["history"] == [{"step": s, **m} for s, m in reports]
    timing = result["timing"]
    assert timing["total"] >= timing["train"] > 0
    # Every second of the run is in one phase; "other" is what none measured.
    phases = ("data", "build", "iterator", "input", "trace", "train", "evaluate", "other")
    assert set(timing) == {"total", *phases} and timing["other"] >= -1e-6  # negative: phases overlap
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint.weights.h5", "config.yaml", "genome.yaml",
                                                    "metrics.json", "tensorboard"]
    with open(tmp_path / "run" / "metrics.json") as handle:
        assert json.load(handle)["top1"] == result["top1"]


def test_nan_loss_raises_training_diverged(shapes_root):
    config = tiny_config(shapes_root, **{"task.training.epochs": 1, "task.training.learning_rate": 1e30,
                                         "task.training.gradient_clip_norm": "null", "task.training.warmup_steps": 0})
    with pytest.raises(TrainingDiverged, match="loss became"):
        train_and_evaluate(small_genome(), config)


@pytest.mark.slow
def test_classification_search_runs_resumes_and_reports(tmp_path, monkeypatch, capsys, warm_training):
    # The search driver, results, report and export know the task only through the registry.
    from nas.cli import main
    from tests.test_search import tiny_experiment

    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, name="tinycls", task={
        "name": "classification",
        "data": {"root": str(tmp_path / "classes64"), "image_size": 64,
                 "generate_shapes": {"train": 30, "val": 10, "seed": 0}},
        "head": {}, "training": {"epochs": 1, "batch_size": 8, "warmup_steps": 2},
        "evaluation": {"batch_size": 16}}, search={"n_trials": 2})
    assert main(["search", path]) == 0
    out = capsys.readouterr().out
    assert "top1=" in out and "best trial" in out
    assert main(["search", path, "--n-trials", "3"]) == 0  # resumes: one more trial, none repeated
    capsys.readouterr()
    assert main(["results", path, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert len(complete) == 3 and all(0.0 <= r["values"]["top1"] <= 1.0 for r in complete)
    assert main(["export", path, "--best", "--out", "best"]) == 0
    assert os.path.exists("best/genome.yaml")
    assert main(["report", path, "--out", "report"]) == 0
    assert "top1 against multiply-adds" in open("report/index.html").read()


def test_evaluation_traces_once_whatever_the_last_batch(tmp_path):
    from nas.tasks.classification.train import _evaluate, _make_eval_step

    write_shapes_dataset(str(tmp_path / "d"), train=10, val=10, image_size=32, seed=0)
    val = read_image_folder(str(tmp_path / "d" / "val"), class_names=CLASSES)
    import tf_keras

    inputs = tf_keras.Input((32, 32, 3))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(len(CLASSES))(tf_keras.layers.GlobalAveragePooling2D()(inputs)))
    eval_step = _make_eval_step(model)
    dataset = make_dataset(val, image_size=32, batch_size=4, training=False)  # batches of 4, 4 and 2
    first = _evaluate(eval_step, dataset)
    assert _evaluate(eval_step, dataset) == first and 0 <= first["top1"] <= first["top5"] <= 1
    assert eval_step.experimental_get_tracing_count() == 1


def test_training_batches_follow_the_seed_whatever_the_threads(tmp_path):
    # As for detection: parallel augmentation must draw its crops and flips from the seed, not from thread timing.
    write_shapes_dataset(str(tmp_path / "d"), train=48, val=4, image_size=32, seed=0)
    train = read_image_folder(str(tmp_path / "d" / "train"), class_names=CLASSES)

    def two_epochs(seed):
        tf.random.set_seed(0)
        batches = make_dataset(train, image_size=32, batch_size=8, training=True, seed=seed).repeat(2)
        return [np.concatenate([images.numpy().ravel(), labels.numpy().ravel()]) for images, labels in batches]

    first = two_epochs(seed=1)
    for _ in range(3):
        np.testing.assert_array_equal(np.concatenate(two_epochs(seed=1)), np.concatenate(first))
    assert len(first) == 12
    assert not np.array_equal(np.sort(np.concatenate(first[:6])), np.sort(np.concatenate(first[6:])))
    assert not np.array_equal(np.concatenate(two_epochs(seed=2)), np.concatenate(first))
