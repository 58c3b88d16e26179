"""RetinaNet proxy task: anchors, matching, losses, head cost parity, and real training."""

import json
import os
import numpy as np
import pytest
import tensorflow as tf

from nas.cli import main
from nas.config import ConfigError
from nas.experiment import load_train_config
from nas.tasks.detection.anchors import decode_boxes, encode_boxes, generate_anchors, label_anchors
from nas.tasks.detection.config import HeadConfig, LossConfig
from nas.tasks.detection.cost import retinanet_head_cost
from nas.tasks.detection.head import build_detector, detection_losses
from nas.tasks.detection.shapes import CATEGORIES
from nas.tasks.base import TrainingDiverged
from nas.tasks.detection.train import train_and_evaluate
from nas.tasks.training import WarmupDecay
from search_spaces.genome import Genome
from spinenet import SPINENET_49, build_spinenet, decode
from spinenet.cost import count_multiply_adds
from tests.conftest import TINY

# Published RetinaNet SpineNet-49 at 640x640 (TF Model Garden README): 28.5 M params, 85.4 B FLOPs (multiply-adds).
PUBLISHED_PARAMS, PUBLISHED_MADDS = 28.5e6, 85.4e9


def test_anchor_layout_matches_head_output_order():
    anchors = generate_anchors(128, 3, 7, 3, (0.5, 1.0, 2.0), 4.0)
    assert anchors.shape == (sum((128 // 2**l) ** 2 for l in range(3, 8)) * 9, 4)
    first = anchors[:9]
    np.testing.assert_allclose((first[:, 0] + first[:, 2]) / 2, 4.0)  # centre of the first level-3 cell
    np.testing.assert_allclose(first[1, 2] - first[1, 0], 32.0)  # scale 0, ratio 1: 4 * stride 8
    np.testing.assert_allclose((anchors[9, 1] + anchors[9, 3]) / 2, 12.0)  # next cell to the right


def test_box_coding_round_trip():
    anchors = tf.constant(generate_anchors(64, 3, 4, 1, (1.0,), 4.0))
    boxes = anchors + tf.constant([1.0, -2.0, 3.0, 5.0])
    np.testing.assert_allclose(decode_boxes(encode_boxes(boxes, anchors), anchors), boxes, atol=1e-3)


def test_matching_positive_negative_ignored_and_forced():
    anchors = tf.constant([[0, 0, 10, 10], [0, 0, 10, 8], [50, 50, 60, 60], [0, 0, 30, 30]], tf.float32)
    gt = tf.constant([[[0, 0, 10, 10], [52, 52, 54, 54]]], tf.float32)
    classes, targets = label_anchors(anchors, gt, tf.constant([[4, 2]]))
    # exact match -> positive; IoU 0.8 -> positive; tiny box claims its best anchor; IoU 0.11 -> negative.
    assert classes.numpy().tolist() == [[4, 4, 2, -1]]
    np.testing.assert_allclose(targets[0, 0], 0.0, atol=1e-6)
    # IoU 0.45 (between the thresholds) beside a better anchor (IoU 0.92): ignored.
    anchors = tf.constant([[0, 0, 10, 10], [0, 0, 10, 24], [40, 40, 50, 50]], tf.float32)
    classes, _ = label_anchors(anchors, tf.constant([[[0, 0, 10, 22], [0, 0, 0, 0]]], tf.float32), tf.constant([[1, -1]]))
    assert classes.numpy().tolist() == [[-2, 1, -1]]


def test_focal_loss_ignores_ignored_anchors_and_rewards_confidence():
    labels = tf.constant([[2, -1, -2]])
    targets = tf.zeros([1, 3, 4])
    good = {"classes": tf.constant([[[-9.0, -9, 9], [-9, -9, -9], [0, 0, 0]]]), "boxes": targets}
    bad = {"classes": tf.constant([[[9.0, -9, -9], [9, 9, 9], [0, 0, 0]]]), "boxes": targets + 1}
    cls_good, box_good = detection_losses(good, labels, targets, LossConfig())
    cls_bad, box_bad = detection_losses(bad, labels, targets, LossConfig())
    assert float(cls_good) < 1e-3 < float(cls_bad) and float(box_good) == 0 < float(box_bad)
    ignored_changed = {"classes": tf.constant([[[-9.0, -9, 9], [-9, -9, -9], [50, -50, 50]]]), "boxes": targets}
    assert float(detection_losses(ignored_changed, labels, targets, LossConfig())[0]) == pytest.approx(float(cls_good))


def test_learning_rate_schedule():
    cosine = WarmupDecay(0.1, total_steps=100, warmup_steps=10)
    assert float(cosine(0)) == pytest.approx(0.01) and float(cosine(10)) == pytest.approx(0.1)
    assert float(cosine(55)) == pytest.approx(0.05) and float(cosine(100)) == pytest.approx(0.0, abs=1e-7)
    step = WarmupDecay(0.1, total_steps=100, warmup_steps=0, schedule="step", boundaries=(0.5, 0.9))
    assert [round(float(step(s)), 6) for s in (0, 49, 50, 95)] == [0.1, 0.1, 0.01, 0.001]


def test_head_cost_equals_keras():
    head = HeadConfig(num_convs=2, num_filters=24, num_scales=2, aspect_ratios=(1.0, 2.0))
    backbone = decode(SPINENET_49, input_shape=(128, 128, 3), **TINY)
    detector = build_detector(backbone, 5, head)
    cost = retinanet_head_cost(num_classes=5, input_size=128, min_level=3, max_level=7, in_channels=16,
                               num_convs=2, num_filters=24, num_anchors=4)
    assert detector.count_params() - backbone.count_params() == cost.params
    assert detector.output_shape["classes"] == (None, sum((128 // 2**l) ** 2 for l in range(3, 8)) * 4, 5)


@pytest.mark.slow
def test_retinanet_spinenet49_matches_published_figures():
    detector = build_detector(build_spinenet("49"), 91, HeadConfig(num_filters=256))
    madds = count_multiply_adds(SPINENET_49, 640) + retinanet_head_cost(
        num_classes=91, input_size=640, min_level=3, max_level=7, in_channels=256).multiply_adds
    assert detector.count_params() == 28_652_567
    assert abs(detector.count_params() / PUBLISHED_PARAMS - 1) < 0.01
    assert abs(madds / PUBLISHED_MADDS - 1) < 0.01


@pytest.mark.slow
def test_decode_cli_reports_the_detector(capsys):
    assert main(["decode", "--model-id", "49", "--input-size", "640", "--head", "retinanet",
                 "--num-classes", "91", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"] == 28_652_567 and report["backbone_params"] == 21_920_192
    assert abs(report["multiply_adds"] / PUBLISHED_MADDS - 1) < 0.01


# A small genome for 64x64 images (levels 3-5, so sides divide by 32).
TINY_GENOME = Genome.from_block_specs(
    [(3, "bottleneck", (0, 1), False), (4, "residual", (1, 2), False), (5, "residual", (2, 3), False),
     (3, "bottleneck", (2, 4), True), (4, "bottleneck", (3, 5), True), (5, "bottleneck", (4, 6), True)],
    min_level=3, max_level=5)


def tiny_settings(tmp_path, *extra):
    return [f"task.data.root={tmp_path}/shapes64", "task.data.image_size=64",
            "task.data.generate_shapes={train: 480, val: 64, seed: 0}", "task.training.batch_size=16",
            "task.training.epochs=8", "task.training.warmup_steps=10", "task.head.num_filters=32",
            "task.head.num_convs=2", "task.evaluation.batch_size=64", "model.endpoints_num_filters=32", *extra]


def small_settings(tmp_path, *extra):
    """tiny_settings on 32 training and 8 validation images, two steps an epoch: for the training loop, not learning."""
    return tiny_settings(tmp_path, f"task.data.root={tmp_path}/shapes64-small",
                         "task.data.generate_shapes={train: 32, val: 8, seed: 0}", *extra)


# The six shapes merged into one category: the whole pipeline (anchors, focal loss, NMS, COCO AP) with a task
# 8 tiny epochs learn. With six classes the same run ended at AP50 0.035-0.10 depending on the seed (and on the
# thread count, which orders the sums), against a margin of 0.05; merged, at 0.18-0.22 on seeds 0-2.
ONE_CLASS = "task.data.categories={" + ", ".join(f"{name}: shape" for name in CATEGORIES) + "}"


@pytest.mark.slow
def test_training_lowers_loss_and_raises_ap(tmp_path, capsys):
    genome_file = tmp_path / "tiny.yaml"
    TINY_GENOME.save(genome_file)
    out = tmp_path / "run"
    args = ["train", "--genome", str(genome_file), "--out", str(out), "--quiet"]
    # every_epoch: true, since auto evaluates every epoch only for a listener (a pruner); float32, since
    # this checks that the pipeline learns, and bf16 made the tiny run's AP margin flaky.
    for item in tiny_settings(tmp_path, "task.evaluation.every_epoch=true", "task.training.precision=float32",
                              ONE_CLASS):
        args += ["--set", item]
    assert main(args) == 0
    trained = json.loads((out / "metrics.json").read_text())
    assert (out / "checkpoint.weights.h5").stat().st_size > 0 and any((out / "tensorboard").iterdir())
    assert (out / "genome.yaml").exists() and trained["fingerprint"] == TINY_GENOME.fingerprint
    assert [h["epoch"] for h in trained["history"]] == list(range(1, 9))
    assert trained["history"][-1]["loss"] < trained["history"][0]["loss"]
    timing = trained["timing"]  # every phase of the run, "other" what none of them measured
    assert set(timing) == {"data", "build", "iterator", "input", "trace", "train", "evaluate", "other", "total"}
    assert timing["other"] >= -1e-6 and timing["evaluate"] > 0 and timing["train"] > 0

    # The same pipeline with a vanishing learning rate is the model at initialisation.
    assert trained["num_classes"] == 1
    untrained = train_and_evaluate(
        TINY_GENOME, load_train_config(None, tiny_settings(tmp_path, "task.training.learning_rate=1e-12",
                                                            "task.training.epochs=1",
                                                            "task.training.precision=float32", ONE_CLASS)))
    assert trained["AP50"] > untrained["AP50"] + 0.05, (trained["AP50"], untrained["AP50"])
    assert trained["AP"] > untrained["AP"]


def test_nan_loss_raises_training_diverged(tmp_path):
    # 16 steps to diverge in, as the 30 of one epoch of tiny_settings gave (2 were not enough).
    config = load_train_config(None, small_settings(tmp_path, "task.training.learning_rate=1e12",
                                                    "task.training.gradient_clip_norm=null",
                                                    "task.training.warmup_steps=0", "task.training.batch_size=2",
                                                    "task.training.epochs=1"))
    with pytest.raises(TrainingDiverged, match="loss became"):
        train_and_evaluate(TINY_GENOME, config)


def test_report_callback_can_stop_training(tmp_path):
    class Stop(Exception):
        pass

    seen = []

    def report(step, metrics):
        seen.append((step, sorted(metrics)))
        raise Stop

    config = load_train_config(None, small_settings(tmp_path, "task.training.epochs=2"))
    with pytest.raises(Stop):
        train_and_evaluate(TINY_GENOME, config, report)
    assert seen == [(2, ["AP", "AP50", "AP75", "APl", "APm", "APs", "epoch", "loss"])]  # after epoch 1's 2 steps


def test_yaml_reads_exponent_numbers(tmp_path):
    # Regression: PyYAML's YAML 1.1 resolver read "1e-4" as a string, so configs failed to load.
    path = tmp_path / "c.yaml"
    path.write_text("task:\n  training:\n    learning_rate: 1e-4\n    weight_decay: 4e-5\n")
    config = load_train_config(str(path), ["task.training.momentum=9e-1"])
    assert config.task.training.learning_rate == 1e-4 and config.task.training.momentum == 0.9


def test_null_switches_off_an_optional_section(tmp_path):
    # Regression: "generate_shapes: null" was read as an empty section, i.e. the default generator,
    # so pointing the task at your own COCO data silently kept generating shapes.
    config = load_train_config(None, ["task.data.generate_shapes=null", f"task.data.root={tmp_path}"])
    assert config.task.data.generate_shapes is None
    path = tmp_path / "c.yaml"
    path.write_text(f"task:\n  data:\n    root: {tmp_path}\n    generate_shapes: null\n")
    assert load_train_config(str(path)).task.data.generate_shapes is None


def test_precision_resolves_from_the_hardware():
    from nas.tasks.training import cpu_has_bf16, resolve_precision

    assert cpu_has_bf16({"avx2", "avx512_bf16"}) and cpu_has_bf16(["amx_bf16"]) and not cpu_has_bf16({"avx2"})
    assert resolve_precision("mixed_float16") == "mixed_float16"
    assert resolve_precision("auto") == ("mixed_bfloat16" if cpu_has_bf16() else "float32")  # no GPU in tests
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("float64")


def test_mixed_precision_trains_with_float32_outputs_and_leaves_no_policy_behind(tmp_path, monkeypatch):
    import tf_keras

    from nas.tasks import training as train
    from nas.tasks.training import compile_step, precision_policy, train_epochs

    steps = []  # every compiled train step, to count its traces
    monkeypatch.setattr(train, "compile_step", lambda *a, **k: steps.append(compile_step(*a, **k)) or steps[-1])
    batches = []  # how many batches each training dataset holds

    def counting_train_epochs(step_fn, dataset, *args, **kwargs):
        batches.append(int(dataset.cardinality()))
        return train_epochs(step_fn, dataset, *args, **kwargs)

    monkeypatch.setattr(train, "train_epochs", counting_train_epochs)

    with precision_policy("mixed_bfloat16"):
        detector = build_detector(decode(TINY_GENOME, input_shape=(64, 64, 3), **TINY), 3, HeadConfig(num_filters=8))
    assert tf_keras.mixed_precision.global_policy().name == "float32"
    outputs = detector(tf.zeros([1, 64, 64, 3]))
    assert outputs["classes"].dtype == tf.float32 and outputs["boxes"].dtype == tf.float32
    assert detector.get_layer("head_class_logits").compute_dtype == "float32"
    assert any(layer.compute_dtype == "bfloat16" for layer in detector.layers[1].layers)

    for precision in ("mixed_bfloat16", "mixed_float16"):  # float16 trains through a loss scale
        config = load_train_config(None, small_settings(tmp_path, f"task.training.precision={precision}",
                                                        "task.training.epochs=1"))
        metrics = train_and_evaluate(TINY_GENOME, config)
        assert metrics["precision"] == precision and np.isfinite(metrics["loss"])
        assert tf_keras.mixed_precision.global_policy().name == "float32"
        # Regression: the optimizer made its slots inside the first step, which traced the step twice.
        assert steps[-1].experimental_get_tracing_count() == 1
        # Regression: an endless dataset was still filling its buffers when training ended, and tearing
        # it down blocked the trial for 25-38 s; it now holds exactly the batches training reads.
        assert batches[-1] == metrics["steps"] == 32 // 16


def test_disk_cache_gives_the_same_pixels_once_per_dataset(tmp_path):
    from nas.tasks.detection.annotations import read_coco
    from nas.tasks.detection.pipeline import make_dataset
    from nas.tasks.detection.pixel_cache import build_image_cache, image_cache_path
    from nas.tasks.detection.shapes import write_shapes_dataset

    write_shapes_dataset(str(tmp_path / "d"), train=8, val=4, image_size=64, seed=0)
    split = read_coco(str(tmp_path / "d" / "instances_val.json"), str(tmp_path / "d" / "val"))
    decoded = [b for b in make_dataset(split, image_size=48, batch_size=4, training=False)]
    path = build_image_cache(split, 48)
    assert path == image_cache_path(split, 48) and os.path.dirname(path).endswith(".spinenas-cache")
    stamp = os.stat(path).st_mtime_ns
    cached = [b for b in make_dataset(split, image_size=48, batch_size=4, training=False, disk_cache=True)]
    assert os.stat(path).st_mtime_ns == stamp  # read, not rebuilt
    for (a, ta), (b, tb) in zip(decoded, cached):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(ta["boxes"].numpy(), tb["boxes"].numpy())
    assert image_cache_path(split, 64) != path  # another size, another file
    images, targets = next(iter(make_dataset(split, image_size=48, batch_size=4, training=True, disk_cache=True)))
    assert images.shape == (4, 48, 48, 3) and targets["boxes"].shape == (4, 32, 4)


def test_training_settings_out_of_range_name_the_key():
    # Regression: detection's training section checked only epochs, batch size and learning rate, so a
    # momentum of 1.5 or a negative warm-up trained (and diverged) instead of failing at load.
    bad = {
        "task.training.momentum=1.5": r"momentum: must be in \[0, 1\)",
        "task.training.warmup_steps=-1": r"warmup_steps: must be 0 or more",
        "task.training.weight_decay=-1e-4": r"weight_decay: must be 0 or more",
        "task.training.weight_decay=.nan": r"weight_decay: must be 0 or more",
        "task.training.gradient_clip_norm=.nan": r"gradient_clip_norm: must be positive",
        "task.training.gradient_clip_norm=0": r"gradient_clip_norm: must be positive",
        "task.training.step_boundaries=[0.9, 0.5]": r"step_boundaries: need increasing fractions",
        "task.training.step_factor=2": r"step_factor: must be in \(0, 1\]",
        "task.training.report_every_steps=0": r"report_every_steps: must be positive",
        "task.training.learning_rate=.inf": r"learning_rate: must be a positive number",
    }
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_train_config(None, [override])
    assert load_train_config(None, []).task.training.warmup_steps == 100


def test_evaluation_traces_the_detector_once_whatever_the_last_batch(tmp_path):
    from nas.tasks.detection.config import EvaluationConfig
    from nas.tasks.detection.annotations import read_coco
    from nas.tasks.detection.pipeline import make_dataset
    from nas.tasks.detection.evaluate import detect, make_postprocess
    from nas.tasks.detection.shapes import write_shapes_dataset

    write_shapes_dataset(str(tmp_path / "d"), train=4, val=10, image_size=64, seed=0)
    split = read_coco(str(tmp_path / "d" / "instances_val.json"), str(tmp_path / "d" / "val"))
    head = HeadConfig(num_convs=1, num_filters=16, num_scales=1, aspect_ratios=(1.0,))
    model = build_detector(decode(TINY_GENOME, input_shape=(64, 64, 3), **TINY), split.num_classes, head)
    anchors = generate_anchors(64, 3, 5, 1, (1.0,), 4.0)
    postprocess = make_postprocess(model, anchors, EvaluationConfig(score_threshold=0.0))
    dataset = make_dataset(split, image_size=64, batch_size=4, training=False)  # batches of 4, 4 and 2
    first = detect(postprocess, dataset, split)
    assert detect(postprocess, dataset, split) == first
    assert {d["image_id"] for d in first} == set(split.image_ids)
    assert postprocess.experimental_get_tracing_count() == 1


def test_optimizer_weights_made_up_front_let_the_step_trace_once():
    # Both optimizer families: legacy SGD (what every task trains with) and the newer SGD (public build), each bare
    # and inside the loss scale mixed_float16 adds. Made inside the step, the slots traced it twice.
    import tf_keras

    from nas.tasks.training import create_optimizer_weights

    makers = {
        "legacy": lambda: tf_keras.optimizers.legacy.SGD(0.1, momentum=0.9),
        "legacy+scale": lambda: tf_keras.mixed_precision.LossScaleOptimizer(
            tf_keras.optimizers.legacy.SGD(0.1, momentum=0.9)),
        "new": lambda: tf_keras.optimizers.SGD(0.1, momentum=0.9),
        "new+scale": lambda: tf_keras.mixed_precision.LossScaleOptimizer(tf_keras.optimizers.SGD(0.1, momentum=0.9)),
    }
    for name, make in makers.items():
        model = tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Dense(2)])
        optimizer = make()
        create_optimizer_weights(optimizer, model.trainable_variables)

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(x) ** 2)
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return loss

        before = [v.numpy().copy() for v in model.trainable_variables]
        step(tf.ones([4, 3]))
        step(tf.ones([4, 3]))
        assert step.experimental_get_tracing_count() == 1, name
        assert any((a != v.numpy()).any() for a, v in zip(before, model.trainable_variables)), name  # it trains


def test_training_batches_follow_the_seed_whatever_the_threads(tmp_path):
    # Augmentation runs on parallel threads; if its random draws came from shared stateful ops, which image got
    # which crop and flip would depend on thread timing, and a seed would not fix a trial's result.
    from nas.tasks.detection.annotations import read_coco
    from nas.tasks.detection.pipeline import make_dataset
    from nas.tasks.detection.shapes import write_shapes_dataset

    write_shapes_dataset(str(tmp_path / "d"), train=48, val=4, image_size=64, seed=0)
    split = read_coco(str(tmp_path / "d" / "instances_train.json"), str(tmp_path / "d" / "train"))

    def two_epochs(seed):
        tf.random.set_seed(0)  # as training does: a global seed alone does not order parallel draws
        batches = make_dataset(split, image_size=64, batch_size=8, training=True, seed=seed).repeat(2)
        return [np.concatenate([images.numpy().ravel(), targets["boxes"].numpy().ravel()])
                for images, targets in batches]

    first = two_epochs(seed=1)
    for _ in range(3):
        np.testing.assert_array_equal(np.concatenate(two_epochs(seed=1)), np.concatenate(first))
    assert len(first) == 12
    # Each epoch draws anew, and another seed draws differently.
    assert not np.array_equal(np.sort(np.concatenate(first[:6])), np.sort(np.concatenate(first[6:])))
    assert not np.array_equal(np.concatenate(two_epochs(seed=2)), np.concatenate(first))
