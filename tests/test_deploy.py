"""Deployed models: a task's whole inference model as a SavedModel and LiteRT files, and ``spinenas export``.

Tolerances: the float32 LiteRT file and the SavedModel must give the
detections the Keras model gives through the task's inference function:
the same classes and counts, scores within 1e-4 and boxes within 1e-3 of the
image side (0.064 px at 64 px). Classification logits within 1e-4.
"""

import json
import os
import shutil

import numpy as np
import pytest

from nas.cli import main
from search_spaces.genome import Genome

SIZE = 64
# Levels 3-5, so 64 px sides divide; four blocks keep each LiteRT conversion to seconds.
GENOME = Genome.from_block_specs(
    [(4, "residual", (0, 1), False), (3, "bottleneck", (1, 2), True), (4, "residual", (2, 3), True),
     (5, "residual", (3, 4), True)], min_level=3, max_level=5)
SETTINGS = ["model.filter_size_scale=0.25", "model.resample_alpha=0.25", "model.endpoints_num_filters=16",
            "task.head.num_filters=16", "task.head.num_convs=1", f"task.data.image_size={SIZE}",
            "task.evaluation.pre_nms_top_k=200", "task.evaluation.max_detections=20"]
BOX_TOLERANCE = 1e-3 * SIZE
SCORE_TOLERANCE = 1e-4


def spread(layer, std, rng):
    """Random weights of a larger spread than the head's initialisation, so scores are far apart (no near-ties)."""
    for weight in layer.weights:  # kernel and bias, or a separable convolution's two kernels and bias
        if "bias" in weight.name:
            weight.assign(np.zeros(weight.shape, np.float32))
        else:
            weight.assign(rng.normal(0, std, weight.shape).astype(np.float32))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from nas.tasks.detection.annotations import read_coco
    from nas.tasks.detection.deploy import padded_image
    from nas.tasks.detection.pixel_cache import resized_sizes
    from nas.tasks.detection.shapes import write_shapes_dataset

    root = str(tmp_path_factory.mktemp("shapes"))
    write_shapes_dataset(root, train=12, val=6, image_size=SIZE, seed=0)
    train = read_coco(f"{root}/instances_train.json", f"{root}/train")
    val = read_coco(f"{root}/instances_val.json", f"{root}/val", category_ids=train.category_ids,
                    class_names=train.category_names)
    _, resized = resized_sizes(val, SIZE)
    images = np.stack([padded_image(p, r, SIZE) for p, r in zip(val.image_paths, resized)])
    return val, images


@pytest.fixture(scope="module")
def detector(tmp_path_factory, shapes):
    """The tiny detector built once: its config, model, inference function, reference outputs, SavedModel, LiteRT."""
    import tensorflow as tf
    import tf_keras

    from nas.experiment import load_train_config
    from nas.tasks import get_task
    from nas.tasks.deploy import litert_bytes, load_saved_model, write_saved_model
    from spinenet.decoder import decode

    val, images = shapes
    tf_keras.utils.set_random_seed(0)  # the same random backbone every run
    config = load_train_config(None, SETTINGS)
    task = get_task("detection")
    model = task.build_model(decode(GENOME, input_shape=(SIZE, SIZE, 3), **config.model.decode_kwargs()), config,
                             val.num_classes)
    rng = np.random.default_rng(0)
    spread(model.get_layer("head_class_logits"), 0.3, rng)
    spread(model.get_layer("head_box_deltas"), 0.05, rng)
    function = task.inference_function(model, config, val.num_classes)
    reference = {k: v.numpy() for k, v in tf.function(function)(tf.constant(images)).items()}
    folder = tmp_path_factory.mktemp("deployed")
    write_saved_model(function, str(folder / "saved_model"), SIZE)
    return {"config": config, "model": model, "function": function, "reference": reference,
            "saved_model": load_saved_model(str(folder / "saved_model")),
            "litert": litert_bytes(function, SIZE, "float32")}


def assert_same_detections(expected: dict, got: dict):
    """Equal counts; every detection of ``expected`` has one in ``got`` of its class, score and box (any order)."""
    np.testing.assert_array_equal(got["num_detections"], expected["num_detections"])
    for image, count in enumerate(expected["num_detections"]):
        unused = list(range(count))
        for row in range(count):
            match = [j for j in unused if got["classes"][image, j] == expected["classes"][image, row]
                     and abs(got["scores"][image, j] - expected["scores"][image, row]) <= SCORE_TOLERANCE
                     and np.abs(got["boxes"][image, j] - expected["boxes"][image, row]).max() <= BOX_TOLERANCE]
            assert match, f"image {image}: detection {row} of the Keras model has no counterpart"
            unused.remove(match[0])
        assert not got["scores"][image, count:].any()


def test_detector_outputs(detector):
    reference = detector["reference"]
    count = len(reference["num_detections"])
    assert reference["boxes"].shape == (count, 20, 4) and reference["classes"].dtype == np.int32
    assert (reference["num_detections"] > 0).all(), "the spread head should detect something"
    assert reference["boxes"].min() >= 0 and reference["boxes"].max() <= SIZE
    scores = reference["scores"]
    assert (np.diff(scores, axis=1) <= 0).all()  # highest first, zero padding last
    assert detector["function"].details["pre_nms_top_k"] == 200


def test_saved_model_and_float32_litert_give_the_keras_detections(detector, shapes):
    from spinenet.latency.runtime import LiteRTModel

    _, images = shapes
    reference = detector["reference"]
    # The SavedModel takes the whole batch (its map_fn path); the LiteRT file one image at a time.
    assert_same_detections(reference, detector["saved_model"](images))
    litert = LiteRTModel(detector["litert"])
    for i in range(len(images)):
        assert_same_detections({k: v[i:i + 1] for k, v in reference.items()}, litert.run(images[i:i + 1]))


def test_int8_litert_runs(detector, shapes):
    from nas.tasks.deploy import litert_bytes
    from spinenet.latency.runtime import LiteRTModel

    content = litert_bytes(detector["function"], SIZE, "int8")
    assert len(content) < len(detector["litert"]) / 2
    outputs = LiteRTModel(content).run(shapes[1][:1])
    assert_runs(outputs, 20)


def test_a_mobile_detector_deploys_with_the_keras_detections(shapes):
    # The deploy target: MBConv blocks with squeeze-excitation, swish and a separable head.
    import tensorflow as tf
    import tf_keras

    from nas.experiment import load_train_config
    from nas.tasks import get_task
    from nas.tasks.deploy import litert_bytes
    from spinenet.decoder import decode
    from spinenet.latency.runtime import LiteRTModel

    val, images = shapes
    genome = Genome.from_block_specs(
        [(4, "mbconv", (0, 1), False), (3, "mbconv_k5_e3", (1, 2), True), (4, "mbconv", (2, 3), True),
         (5, "mbconv_k3_e3", (3, 4), True)], min_level=3, max_level=5, family="mobile")
    tf_keras.utils.set_random_seed(0)
    config = load_train_config(None, [*SETTINGS, "model.activation=swish", "task.head.separable=true"])
    task = get_task("detection")
    model = task.build_model(decode(genome, input_shape=(SIZE, SIZE, 3), **config.model.decode_kwargs()), config,
                             val.num_classes)
    assert any("_se_" in layer.name for layer in model.get_layer("spinenet").layers)
    assert isinstance(model.get_layer("head_box_conv0"), tf_keras.layers.SeparableConv2D)
    rng = np.random.default_rng(0)
    # A fresh MBConv backbone's features are small (at most about 0.2, swish near zero halves
    # them): a wider spread of the head's weights keeps its scores far apart here too.
    spread(model.get_layer("head_class_conv0"), 3.0, rng)
    spread(model.get_layer("head_box_conv0"), 1.0, rng)
    spread(model.get_layer("head_class_logits"), 3.0, rng)
    spread(model.get_layer("head_box_deltas"), 0.05, rng)
    function = task.inference_function(model, config, val.num_classes)
    reference = {k: v.numpy() for k, v in tf.function(function)(tf.constant(images[:4])).items()}
    assert (reference["num_detections"] > 0).all()
    litert = LiteRTModel(litert_bytes(function, SIZE, "float32"))
    for i in range(4):
        assert_same_detections({k: v[i:i + 1] for k, v in reference.items()}, litert.run(images[i:i + 1]))
    assert_runs(LiteRTModel(litert_bytes(function, SIZE, "float16")).run(images[:1]), 20)


def assert_runs(outputs: dict, detections: int):
    assert outputs["boxes"].shape == (1, detections, 4) and outputs["scores"].shape == (1, detections)
    assert outputs["classes"].shape == (1, detections) and outputs["num_detections"].shape == (1,)
    assert all(np.isfinite(v).all() for v in outputs.values())


def test_deployed_ap_is_the_same_from_litert_and_saved_model(detector, shapes):
    from nas.tasks.detection.coco import METRIC_NAMES
    from nas.tasks.detection.deploy import deployed_ap
    from spinenet.latency.runtime import LiteRTModel

    val, _ = shapes
    from_litert = deployed_ap(LiteRTModel(detector["litert"]).run, val, SIZE)
    from_saved_model = deployed_ap(detector["saved_model"], val, SIZE, batch_size=3)
    assert set(METRIC_NAMES) <= set(from_litert)
    assert abs(from_litert["AP"] - from_saved_model["AP"]) <= 0.01


def test_classifier_logits(tmp_path):
    import tensorflow as tf
    import tf_keras

    from nas.experiment import load_train_config
    from nas.tasks import get_task
    from nas.tasks.deploy import litert_bytes, load_saved_model, write_saved_model
    from spinenet.decoder import decode
    from spinenet.latency.runtime import LiteRTModel

    tf_keras.utils.set_random_seed(0)
    config = load_train_config(None, SETTINGS[:3] + [f"task.data.image_size={SIZE}"], task="classification")
    task = get_task("classification")
    model = task.build_model(decode(GENOME, input_shape=(SIZE, SIZE, 3), **config.model.decode_kwargs()), config, 4)
    spread(model.get_layer("head_logits"), 1.0, np.random.default_rng(1))
    function = task.inference_function(model, config, 4)
    images = np.random.default_rng(2).uniform(0, 255, [2, SIZE, SIZE, 3]).astype(np.float32)
    reference = {k: v.numpy() for k, v in tf.function(function)(tf.constant(images)).items()}
    assert reference["logits"].shape == (2, 4) and np.ptp(reference["logits"]) > 0.05
    np.testing.assert_allclose(reference["probabilities"].sum(axis=1), 1.0, atol=1e-6)
    write_saved_model(function, str(tmp_path / "saved_model"), SIZE)
    served = load_saved_model(str(tmp_path / "saved_model"))(images)
    np.testing.assert_allclose(served["logits"], reference["logits"], atol=1e-4)
    litert = LiteRTModel(litert_bytes(function, SIZE)).run(images[:1])
    assert set(litert) == {"logits", "probabilities"}
    np.testing.assert_allclose(litert["logits"], reference["logits"][:1], atol=1e-4)
    np.testing.assert_allclose(litert["probabilities"], reference["probabilities"][:1], atol=1e-5)

    # The same through the command line, from a spinenas train folder of this model: its weights are the ones used.
    from nas.tasks.training import write_outputs

    write_outputs(str(tmp_path / "run"), GENOME, config, model, {"num_classes": 4})
    out = tmp_path / "deployed"
    assert main(["export", "--run", str(tmp_path / "run"), "--litert", "--out", str(out)]) == 0
    deploy = json.loads((out / "deploy.json").read_text())
    assert deploy["num_classes"] == 4 and set(deploy["outputs"]) == {"logits", "probabilities"}
    exported = LiteRTModel(str(out / "model_float32.tflite")).run(images[:1])
    np.testing.assert_allclose(exported["logits"], reference["logits"][:1], atol=1e-4)


def test_a_layer_litert_cannot_convert_is_named():
    import tensorflow as tf
    import tf_keras

    from nas.tasks.deploy import InferenceFunction, litert_bytes
    from spinenet.latency.runtime import ConversionError

    class Determinant(tf_keras.layers.Layer):
        def call(self, x):
            return tf.linalg.det(x[..., 0, :3, :3])  # MatrixDeterminant: no LiteRT built-in kernel

    inputs = tf_keras.Input((8, 8, 3))
    model = tf_keras.Model(inputs, Determinant(name="odd_determinant")(inputs))
    function = InferenceFunction(lambda images: {"det": model(images)}, {"det": "?"}, model=model)
    with pytest.raises(ConversionError, match=r"layer odd_determinant: op tf\.MatrixDeterminant"):
        litert_bytes(function, 8)


def test_a_genome_litert_cannot_convert_is_one_line_naming_its_layer(tmp_path, capsys):
    # A block of one's own with an op LiteRT has no kernel for, deep inside the backbone of the detector.
    import optuna
    import tensorflow as tf
    import tf_keras

    from search_spaces.block_fns import BLOCK_FNS, register_block_fn

    class Digamma(tf_keras.layers.Layer):
        def call(self, x):
            return tf.math.digamma(tf.abs(x) + 1.0)

    def odd(x, filters, *, use_projection, drop_rate, layers, name):
        return Digamma(name=f"{name}_digamma")(layers.conv_bn_act(x, filters, 3, name=f"{name}_a"))

    register_block_fn("odd", expansion=1, build=odd, count_params=lambda c_in, f, proj: 9 * c_in * f + 4 * f,
                      count_multiply_adds=lambda c_in, f, h, w, proj: h * w * 9 * c_in * f)
    try:
        specs = GENOME.to_block_specs()
        specs[1] = (specs[1][0], "odd", *specs[1][2:])
        genome = Genome.from_block_specs(specs, min_level=3, max_level=5)
        experiment = tmp_path / "tiny.yaml"
        experiment.write_text(
            "name: tiny\nmodel: {filter_size_scale: 0.25, resample_alpha: 0.25, endpoints_num_filters: 16}\n"
            f"task:\n  data: {{image_size: {SIZE}}}\n  head: {{num_filters: 16, num_convs: 1}}\n"
            f"search:\n  storage: sqlite:///{tmp_path}/study.db\n")
        study = optuna.create_study(storage=f"sqlite:///{tmp_path}/study.db", study_name="tiny")
        study.add_trial(optuna.trial.create_trial(value=0.1, user_attrs={"genome": genome.to_yaml(),
                                                                         "metrics": {"num_classes": 3}}))
        capsys.readouterr()  # Optuna's line about the new study
        out = tmp_path / "t0"
        line = one_line_error(capsys, ["export", str(experiment), "--trial", "0", "--litert", "--out", str(out)], out)
    finally:
        BLOCK_FNS.pop("odd")
    assert "layer block2_unit1_digamma: op tf.Digamma has no LiteRT built-in kernel" in line, line


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, detector, shapes):
    """A spinenas train --out folder of the fixture's detector (its weights as they are), as training writes it."""
    from nas.tasks.training import write_outputs

    folder = str(tmp_path_factory.mktemp("run"))
    write_outputs(folder, GENOME, detector["config"], detector["model"], {"num_classes": shapes[0].num_classes})
    return folder


def test_export_run_writes_litert_files_and_deploy_json(run_folder, detector, shapes, tmp_path, capsys):
    from spinenet.latency.runtime import LiteRTModel

    out = tmp_path / "deployed"
    assert main(["export", "--run", run_folder, "--litert", "--quantize", "float16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    names = ["genome.yaml", "model_float32.tflite", "model_float16.tflite", "deploy.json"]
    assert sorted(os.listdir(out)) == sorted(names)
    assert all(f"wrote {out / name}" in printed for name in names[1:])
    deploy = json.loads((out / "deploy.json").read_text())
    assert deploy["genome"] == GENOME.fingerprint and deploy["num_classes"] == shapes[0].num_classes
    assert deploy["input"]["shape"] == [None, SIZE, SIZE, 3] and deploy["input"]["pixel_range"] == [0, 255]
    assert set(deploy["outputs"]) == {"boxes", "scores", "classes", "num_detections"}
    assert deploy["litert"]["quantizations"] == ["float32", "float16"]
    assert deploy["files"] == {n: os.path.getsize(out / n) for n in ("model_float32.tflite", "model_float16.tflite")}
    images = shapes[1]
    # The run's weights were loaded: the file gives the fixture model's detections.
    reference = {k: v[:1] for k, v in detector["reference"].items()}
    assert_same_detections(reference, LiteRTModel(str(out / "model_float32.tflite")).run(images[:1]))
    assert_runs(LiteRTModel(str(out / "model_float16.tflite")).run(images[:1]), 20)


def test_export_trial_writes_a_fresh_saved_model(tmp_path, shapes, capsys):
    import optuna

    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(
        "name: tiny\nmodel: {filter_size_scale: 0.25, resample_alpha: 0.25, endpoints_num_filters: 16}\n"
        f"task:\n  data: {{image_size: {SIZE}}}\n  head: {{num_filters: 16, num_convs: 1}}\n"
        f"search:\n  storage: sqlite:///{tmp_path}/study.db\n")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/study.db", study_name="tiny", direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.1, user_attrs={"genome": GENOME.to_yaml(),
                                                                     "metrics": {"num_classes": 3}}))
    out = tmp_path / "t0"
    assert main(["export", str(experiment), "--trial", "0", "--saved-model", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "freshly initialised weights" in printed
    assert {"genome.yaml", "block_specs.py", "saved_model", "deploy.json"} <= set(os.listdir(out))
    from nas.tasks.deploy import load_saved_model

    outputs = load_saved_model(str(out / "saved_model"))(shapes[1][:2])
    assert outputs["boxes"].shape == (2, 100, 4) and outputs["num_detections"].shape == (2,)
    assert json.loads((out / "deploy.json").read_text())["source"]["trial"] == 0


def test_export_pareto_deploys_every_front_trial_with_the_datas_class_count(tmp_path, capsys):
    # Trials recorded no class count (as before it was recorded): the experiment's data gives it, read once.
    import optuna

    from nas.tasks.detection.shapes import CATEGORIES
    from spinenet.latency.runtime import LiteRTModel

    experiment = tmp_path / "two.yaml"
    experiment.write_text(
        "name: two\nmodel: {filter_size_scale: 0.25, resample_alpha: 0.25, endpoints_num_filters: 16}\n"
        f"task:\n  data: {{image_size: {SIZE}, root: {tmp_path}/shapes, generate_shapes: {{train: 6, val: 3}}}}\n"
        "  head: {num_filters: 16, num_convs: 1}\n"
        f"search:\n  storage: sqlite:///{tmp_path}/study.db\n  objectives: [{{AP: maximize}}, {{params: minimize}}]\n")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/study.db", study_name="two",
                                directions=["maximize", "minimize"])
    other = Genome.from_block_specs([(3, "residual", (0, 1), False), *GENOME.to_block_specs()[1:]],
                                    min_level=3, max_level=5)
    for values, genome in (((0.1, 1.0), GENOME), ((0.2, 2.0), other), ((0.05, 3.0), GENOME)):  # the last: dominated
        study.add_trial(optuna.trial.create_trial(values=list(values), user_attrs={"genome": genome.to_yaml()}))
    out = tmp_path / "front"
    assert main(["export", str(experiment), "--pareto", "--litert", "--out", str(out)]) == 0
    capsys.readouterr()
    assert sorted(os.listdir(out)) == ["trial_00000", "trial_00001"]
    for number, genome in ((0, GENOME), (1, other)):
        folder = out / f"trial_{number:05d}"
        assert {"genome.yaml", "block_specs.py", "model_float32.tflite", "deploy.json"} <= set(os.listdir(folder))
        deploy = json.loads((folder / "deploy.json").read_text())
        assert deploy["genome"] == genome.fingerprint and deploy["num_classes"] == len(CATEGORIES)
        assert deploy["source"]["trial"] == number
        detections = LiteRTModel(str(folder / "model_float32.tflite")).run(np.zeros([1, SIZE, SIZE, 3], np.float32))
        assert detections["boxes"].shape == (1, 100, 4) and detections["classes"].shape == (1, 100)


def one_line_error(capsys, argv, out) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert not out.exists(), "nothing may be written"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spinenas: error: "), captured.err
    return lines[0]


def test_bad_export_requests_are_one_line_and_write_nothing(run_folder, tmp_path, capsys):
    out = tmp_path / "never"
    run = ["export", "--run", run_folder, "--out", str(out)]
    assert "unknown 'int4'" in one_line_error(capsys, [*run, "--quantize", "float16,int4"], out)
    assert "add --saved-model and/or --litert" in one_line_error(capsys, run, out)
    broken = tmp_path / "broken"
    shutil.copytree(run_folder, broken)
    os.remove(broken / "checkpoint.weights.h5")
    error = one_line_error(capsys, ["export", "--run", str(broken), "--litert", "--out", str(out)], out)
    assert "no checkpoint.weights.h5" in error
    other = tmp_path / "other"
    shutil.copytree(run_folder, other)
    metrics = json.loads((other / "metrics.json").read_text())
    (other / "metrics.json").write_text(json.dumps({**metrics, "fingerprint": "0123456789ab"}))
    error = one_line_error(capsys, ["export", "--run", str(other), "--litert", "--out", str(out)], out)
    assert "trained for genome 0123456789ab" in error
    # A genome.yaml that is not the trained one, with no fingerprint to tell: the weights do not load.
    (other / "metrics.json").write_text(json.dumps({"num_classes": metrics["num_classes"]}))
    Genome.from_block_specs([(4, "bottleneck", (0, 1), False), *GENOME.to_block_specs()[1:]],
                            min_level=3, max_level=5).save(other / "genome.yaml")
    error = one_line_error(capsys, ["export", "--run", str(other), "--litert", "--out", str(out)], out)
    assert "checkpoint.weights.h5 does not fit the model of genome.yaml and config.yaml" in error
    assert "no such folder" in one_line_error(capsys, ["export", "--run", str(tmp_path / "none"), "--litert",
                                                       "--out", str(out)], out)
