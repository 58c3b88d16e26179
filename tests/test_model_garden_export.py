"""Genomes exported as TF Model Garden experiments, then read and built by the Model Garden's own code.

The Model Garden (tests/model_garden.py) imports the generated registration
module, parses each experiment YAML through the flags its README's train
command gives, and builds each detector with its own factories, at 128x128 to
keep the builds short. The backbones must be the genome's: the same blocks in
the Model Garden's ``_block_specs``, and the parameter count of spinenas's cost
model and decoder.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import re
import shlex
import sys

import optuna
import pytest

from nas.cli import build_parser, main
from search_spaces.genome import Genome
from search_spaces.space import ScalePermutedSpace
from spinenet import SPINENET_49, SPINENET_MOBILE_49
from spinenet.cost import count_params
from spinenet.model_garden_backbone import ModelGardenError
from spinenet.model_garden_export import Recipe, plan_model_garden
from spinenet.model_garden_layout import model_garden_layout
from spinenet.scaling import Scaling
from spinenet.specs import scaling_for
from tests import model_garden

SIZE = 128  # the smallest input whose level-7 features are 1x1
MOBILE_SPACE = ScalePermutedSpace(family="mobile", block_fns=["mbconv"],
                                  intermediate_levels=[2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5])


def _random_genome() -> Genome:
    # Seed 1 of the default space has blocks that reach no endpoint, which the Model Garden builds and Keras drops.
    genome = ScalePermutedSpace().random_genome(random.Random(1))
    assert any(not node.live for node in genome.resolve().nodes)
    return genome


# ------------------------------------------------------------------ no Model Garden needed
@pytest.mark.parametrize("genome, message", [
    (Genome.from_block_specs(SPINENET_MOBILE_49.to_block_specs()[:3] + [(3, "mbconv_k5_e3", (3, 4), False)]
                             + SPINENET_MOBILE_49.to_block_specs()[4:], family="mobile"),
     "block 4 is 'mbconv_k5_e3', which the Model Garden's SpineNetMobile does not have (it builds mbconv)"),
    (Genome.from_block_specs(SPINENET_49.to_block_specs(), init_block_fn="residual"),
     "the stem blocks are 'residual'; the Model Garden's SpineNet builds its stem of 'bottleneck' blocks"),
    (Genome.from_block_specs(SPINENET_49.to_block_specs(), num_init_blocks=3),
     "the Model Garden's SpineNet has 2 stem blocks, this genome 3"),
    # Mobile SpineNet-49 with its level-7 output made an intermediate block, and max_level 6.
    (Genome.from_block_specs(SPINENET_MOBILE_49.to_block_specs()[:14] + [(7, "mbconv", (6, 15), False)]
                             + SPINENET_MOBILE_49.to_block_specs()[15:], family="mobile", max_level=6),
     "block 9 is at level 7, above max_level 6: the Model Garden's SpineNetMobile would build it at level 6"),
])
def test_what_the_model_garden_cannot_build_is_named(genome, message):
    with pytest.raises(ModelGardenError) as error:
        plan_model_garden(genome)
    assert str(error.value) == message
    # A checkpoint layout is refused for the same genomes, in the same words.
    with pytest.raises(ModelGardenError) as error:
        model_garden_layout(genome, Scaling(family=genome.family))
    assert str(error.value) == message


def test_mobile_block_repeats_have_no_checkpoint_layout():
    with pytest.raises(ModelGardenError, match=r"SpineNetMobile chains no block repeats \(block_repeats must be 1, "
                                               r"got 2\)"):
        model_garden_layout(SPINENET_MOBILE_49, Scaling(family="mobile", block_repeats=2))


@pytest.mark.parametrize("model_id, size, activation, message", [
    ("mobile-49", None, None, "scaling mobile-49 is a Mobile SpineNet scaling and this genome's family is 'spinenet'"),
    ("77", None, None, "unknown SpineNet model id '77'"),
    ("49", 600, None, "input size 600 is not divisible by 128"),
    ("49", None, "gelu", "activation must be relu or swish"),
])
def test_bad_settings_are_named(model_id, size, activation, message):
    with pytest.raises(ModelGardenError, match=re.escape(message)):
        plan_model_garden(SPINENET_49, model_id, size, activation=activation)


def test_recipe_schedule():
    config = plan_model_garden(SPINENET_49, recipe=Recipe(epochs=100)).files["retinanet.yaml"]
    # 463 steps per epoch (118,287 images at batch 256); cut 30 and 10 epochs before the end.
    assert "train_steps: 46300\n" in config and "boundaries: [32410, 41670]" in config
    with pytest.raises(ModelGardenError, match="epochs must be an integer above 30"):
        Recipe(epochs=30)


def test_the_readme_loads_the_trained_backbone_back_with_decode_weights():
    readme = plan_model_garden(SPINENET_MOBILE_49, "mobile-49S").files["README.md"]
    command = re.search(r"^ {4}spinenas (decode .*)$", readme, re.M).group(1)
    args = build_parser().parse_args(shlex.split(command))
    assert (args.genome, args.model_id, args.weights) == ("../genome.yaml", "mobile-49S", "runs/retinanet/")


def _study(tmp_path, *genomes) -> str:
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(storage=storage, study_name="mg", direction="maximize")
    for value, genome in enumerate(genomes):
        study.add_trial(optuna.trial.create_trial(value=float(value), user_attrs={"genome": genome.to_yaml()}))
    return storage


def test_cli_checks_every_trial_before_writing(tmp_path, capsys):
    storage = _study(tmp_path, SPINENET_49, Genome.from_block_specs(SPINENET_49.to_block_specs(),
                                                                    init_block_fn="residual"))
    args = ["export", "--storage", storage, "--study-name", "mg", "--out", str(tmp_path / "out")]
    assert main([*args, "--trial", "1", "--model-garden"]) == 2
    assert "trial 1 [" in capsys.readouterr().err and not os.path.exists(tmp_path / "out")
    assert main([*args, "--trial", "0", "--model-garden-size", "256"]) == 2
    assert "--model-garden-size needs --model-garden" in capsys.readouterr().err


# ------------------------------------------------------------------ built by the Model Garden
@pytest.fixture(scope="module")
def mg():
    """The Model Garden on sys.path and its flags defined once (as train.py defines them)."""
    model_garden.on_path()
    from absl import flags
    from official.common import flags as tfm_flags

    if "experiment" not in flags.FLAGS:
        tfm_flags.define_flags()
    return flags.FLAGS


def _load(folder: str, module: str):
    """Import train.py (and through it the registration module) the way ``python train.py`` does."""
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(f"train_{module}", os.path.join(folder, "train.py"))
        train = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(train)
        return importlib.import_module(module), train
    finally:
        sys.path.remove(folder)


def _readme_configs(flags, folder: str) -> dict:
    """Detector -> the experiment config each train command of README.md gives (parsed as train.main does)."""
    from official.core import train_utils

    readme = open(os.path.join(folder, "README.md"), encoding="utf-8").read().replace("\\\n", " ")
    configs = {}
    here = os.getcwd()
    os.chdir(folder)  # the commands run from the folder
    try:
        for command in re.findall(r"^ {4}python train\.py (.*)$", readme, re.M):
            flags.unparse_flags()
            flags(["train.py", *shlex.split(command)])
            params = train_utils.parse_configuration(flags, lock_return=False, print_return=False)
            detector = os.path.basename(flags.model_dir)
            configs.setdefault(detector, []).append(params)
    finally:
        os.chdir(here)
    return configs


def _build(detector: str, params):
    import tf_keras
    from official.vision.modeling import factory

    params.override({"task": {"model": {"input_size": [SIZE, SIZE, 3]}}})
    specs = tf_keras.layers.InputSpec(shape=[None, SIZE, SIZE, 3])
    build = factory.build_retinanet if detector == "retinanet" else factory.build_maskrcnn
    return build(specs, params.task.model)


def _block_specs(backbone) -> list[tuple]:
    return [(b.level, b.block_fn, tuple(b.input_offsets), b.is_output) for b in backbone._block_specs]


def _check_export(flags, export, folder: str, family_class: str) -> dict:
    """Build every detector of an export; check its config and backbone; return detector -> backbone params."""
    module, train = _load(folder, export.module)
    assert module.BACKBONE_TYPE == export.backbone_type and callable(train.train.main)
    configs = _readme_configs(flags, folder)
    assert sorted(configs) == sorted(export.experiments)
    scaling = scaling_for(export.model_id)
    counts = {}
    for detector, (params, *overridden) in configs.items():
        model_config = params.task.model
        assert model_config.backbone.type == export.backbone_type
        assert model_config.input_size == [export.input_size, export.input_size, 3]
        for key, value in model_config.backbone.get().as_dict().items():
            assert value == scaling.get(key, 0.0), key
        parser = params.task.train_data.parser
        assert (parser.aug_rand_hflip, parser.aug_scale_min, parser.aug_scale_max) == (True, 0.5, 2.0)
        assert params.trainer.train_steps == 350 * 463
        assert params.trainer.optimizer_config.learning_rate.stepwise.boundaries == [320 * 463, 340 * 463]
        for extra in overridden:  # the README's --params_override example parses too
            assert extra.task.model.backbone.get().stochastic_depth_drop_rate == 0.2
        model = _build(detector, params)
        backbone = model.backbone
        assert type(backbone).__name__ == family_class
        assert _block_specs(backbone) == export.genome.to_block_specs()
        assert backbone.count_params() == export.params == count_params(export.genome, **scaling)
        if detector != "retinanet":
            assert model.mask_head is not None
            assert len(model.roi_sampler) == (3 if detector == "cascadercnn" else 1)
        counts[detector] = backbone.count_params()
    return counts


@pytest.mark.slow
def test_a_random_genome_trains_as_three_model_garden_detectors(mg, tmp_path):
    genome = _random_genome()
    export = plan_model_garden(genome, "49")
    export.write(str(tmp_path))
    counts = _check_export(mg, export, str(tmp_path), "SpineNet")
    assert sorted(counts) == ["cascadercnn", "maskrcnn", "retinanet"]
    from spinenet.decoder import decode

    decoded = decode(genome, input_shape=(SIZE, SIZE, 3), **scaling_for("49"))
    assert set(counts.values()) == {decoded.count_params()}


@pytest.mark.slow
def test_spinenet49_exported_from_a_study_is_the_model_gardens_own(mg, tmp_path, capsys):
    storage = _study(tmp_path, SPINENET_49)
    out = tmp_path / "best"
    assert main(["export", "--storage", storage, "--study-name", "mg", "--trial", "0", "--out", str(out),
                 "--model-garden"]) == 0
    assert "model_garden/ (spinenas_" in capsys.readouterr().out
    folder = str(out / "model_garden")
    export = plan_model_garden(Genome.load(out / "genome.yaml"), "49", source="trial 0 of study 'mg'")
    assert sorted(os.listdir(folder)) == sorted(export.files)
    counts = _check_export(mg, export, folder, "SpineNet")
    import tf_keras
    from official.vision.configs import backbones
    from official.vision.configs.common import NormActivation
    from official.vision.modeling.backbones import factory

    own = factory.build_backbone(tf_keras.layers.InputSpec(shape=[None, SIZE, SIZE, 3]),
                                 backbones.Backbone(type="spinenet", spinenet=backbones.SpineNet(model_id="49")),
                                 NormActivation())
    assert set(counts.values()) == {own.count_params()} == {21_920_192}
    # The Model Garden's own list ends with a level-2 output that min_level 3 leaves unconnected.
    assert _block_specs(own)[:15] == SPINENET_49.to_block_specs() and _block_specs(own)[15][0] == 2


@pytest.mark.slow
def test_a_mobile_genome_is_a_spinenet_mobile_retinanet(mg, tmp_path):
    genome = MOBILE_SPACE.random_genome(random.Random(0))
    export = plan_model_garden(genome, "mobile-49", 384)
    export.write(str(tmp_path))
    counts = _check_export(mg, export, str(tmp_path), "SpineNetMobile")
    assert list(counts) == ["retinanet"]
    from spinenet.decoder import decode

    decoded = decode(genome, input_shape=(SIZE, SIZE, 3), activation="swish", **scaling_for("mobile-49"))
    assert counts["retinanet"] == decoded.count_params()


def test_a_variant_with_its_bases_options_is_written_as_the_base():
    from search_spaces.block_fns import BLOCK_FNS, register_block_variant

    register_block_variant("bottleneck_same", "bottleneck")  # no option changed: the Model Garden's bottleneck
    try:
        specs = SPINENET_49.to_block_specs()
        specs[3] = (specs[3][0], "bottleneck_same", *specs[3][2:])
        genome = Genome.from_block_specs(specs)
        module = next(text for name, text in plan_model_garden(genome, "49").files.items() if name.endswith(".py")
                      and "BLOCK_SPECS" in text)
        assert "bottleneck_same" not in module and repr(SPINENET_49.to_block_specs()[3]) in module
        # ...and its weights sit where the base block's do in a Model Garden checkpoint.
        assert model_garden_layout(genome, Scaling()) == model_garden_layout(SPINENET_49, Scaling())
    finally:
        BLOCK_FNS.pop("bottleneck_same")
