"""Mobile SpineNet: families, the MBConv block, reference parity, the mobile space and serialization."""

import json
import os
import random

import numpy as np
import optuna
import pytest

from search_spaces.block_fns import BLOCK_FNS, find_block_variant
from search_spaces.genome import Genome
from search_spaces.genome_rules import GenomeError
from search_spaces.space import ScalePermutedSpace, SpaceError
from spinenet import MOBILE_SCALING_MAP, SCALING_MAP, SPINENET_49, SPINENET_MOBILE_49
from spinenet.cost import CostBudget, count_params, network_cost
from spinenet.plan.network import plan_network
from spinenet.scaling import Scaling
from spinenet.specs import REFERENCE_GENOMES
from tests.test_cost import _profiler_multiply_adds

REFERENCE_MOBILE_PARAMS = {"49": 2_313_892, "49S": 1_004_872, "49XS": 869_400}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOBILE_SPACE = ScalePermutedSpace(family="mobile", block_fns=["mbconv"], intermediate_levels=[2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5],
                                  block_options={"kernel_size": [3, 5], "expand_ratio": [3, 6]})

optuna.logging.set_verbosity(optuna.logging.WARNING)

# A SpineNet-49 genome file as written before families existed.
OLD_YAML = """min_level: 3
max_level: 7
stem:
  num_init_blocks: 2
  block_fn: bottleneck
# [level, block_fn, [input_offset0, input_offset1], is_output]
blocks:
""" + "".join(f"- [{l}, {fn}, [{a}, {b}], {str(o).lower()}]\n" for l, fn, (a, b), o in SPINENET_49.to_block_specs())


# ------------------------------------------------------------ no TensorFlow
@pytest.mark.parametrize("model_id", list(REFERENCE_MOBILE_PARAMS))
def test_cost_model_params_match_reference(model_id):
    for size in (128, 384, 1024):
        assert network_cost(SPINENET_MOBILE_49, size, **MOBILE_SCALING_MAP[model_id]).params == \
            REFERENCE_MOBILE_PARAMS[model_id]


def test_spinenet_parity_unchanged():
    assert count_params(SPINENET_49, **SCALING_MAP["49"]) == 21_920_192
    assert network_cost(SPINENET_49, 640).multiply_adds == 28_261_990_400


def test_mobile_seed_is_the_reference_genome():
    assert SPINENET_MOBILE_49.family == "mobile" and len(SPINENET_MOBILE_49.blocks) == 16
    assert all(b.block_fn == "mbconv" for b in SPINENET_MOBILE_49.blocks)
    assert SPINENET_MOBILE_49.init_block_fn == "mbconv"
    assert SPINENET_MOBILE_49.block_levels[:2] == [1, 2]  # stem node 0 sits at level 1
    assert REFERENCE_GENOMES["spinenet-mobile-49"] is SPINENET_MOBILE_49
    assert dict(BLOCK_FNS["mbconv"].options) == {"kernel_size": 3, "expand_ratio": 6, "se_ratio": 0.2}


def test_old_genome_files_load_unchanged(tmp_path):
    assert SPINENET_49.to_yaml() == OLD_YAML  # no family key for SpineNet genomes
    old_json = {k: v for k, v in json.loads(SPINENET_49.to_json()).items()}
    assert "family" not in old_json
    (tmp_path / "old.yaml").write_text(OLD_YAML)
    (tmp_path / "old.json").write_text(json.dumps(old_json))
    for name in ("old.yaml", "old.json"):
        genome = Genome.load(tmp_path / name)
        assert genome == SPINENET_49 and genome.family == "spinenet"
        assert genome.fingerprint == "c2050b6cf2962013"


def test_mobile_genome_round_trips_with_its_family(tmp_path):
    text = SPINENET_MOBILE_49.to_yaml()
    assert text.startswith("family: mobile\n")
    for name in ("m.yaml", "m.json"):
        SPINENET_MOBILE_49.save(tmp_path / name)
        assert Genome.load(tmp_path / name) == SPINENET_MOBILE_49
    assert Genome.from_yaml(text).fingerprint == SPINENET_MOBILE_49.fingerprint != SPINENET_49.fingerprint


@pytest.mark.parametrize(
    "specs, options, message",
    [
        ([(3, "mbconv", (0, 1), True)], {"min_level": 3, "max_level": 3}, "block 1: block fn 'mbconv' belongs to the mobile family"),
        ([(3, "residual", (0, 1), True)], {"min_level": 3, "max_level": 3, "family": "mobile"},
         "block fn 'residual' belongs to the spinenet family, not mobile"),
        ([(3, "mbconv", (0, 1), True)], {"min_level": 3, "max_level": 3, "family": "mobile", "num_init_blocks": 3},
         "num_init_blocks must be 2 in the mobile family"),
        ([(3, "mbconv", (0, 1), True)], {"min_level": 3, "max_level": 3, "family": "tiny"}, "unknown block family 'tiny'"),
    ],
)
def test_family_rules_are_validated(specs, options, message):
    with pytest.raises(GenomeError, match=message):
        Genome.from_block_specs(specs, **options)


def test_layer_plan_counts_squeeze_excitation_and_depthwise_resampling():
    plan = plan_network(SPINENET_MOBILE_49, Scaling(**MOBILE_SCALING_MAP["49"], family="mobile"))
    layers = {layer.name: layer for layer in plan.layers}
    assert layers["stem_conv"].kernel == 3 and layers["stem_conv"].channels == 8 and layers["stem_conv"].level == 1
    assert layers["stem_block2_unit1_dw_conv"].strides == 2
    se = layers["block1_unit1_se_reduce"]
    assert (se.in_channels, se.channels, se.use_bias, se.level) == (144, 4, True, None)  # int(24 * 0.2) = 4
    assert layers["block1_unit1_se_gate"].activation == "hard_sigmoid"
    # Block 3 (level 4) reads node 1 (level 2): two strided depthwise convs, no reduction, a 1x1 to 80.
    assert layers["block3_in0_l2_down2_conv"].kind == "dwconv"
    assert "block3_in0_l2_reduce_conv" not in layers and layers["block3_in0_l2_expand_conv"].channels == 80
    assert "stem_block1_unit1_add" not in layers and "block1_unit1_add" in layers  # residual only when in == out


def test_mbconv_variants_cost_more_with_larger_kernels_and_ratios():
    names = [find_block_variant("mbconv", kernel_size=k, expand_ratio=e) for k in (3, 5) for e in (3, 6)]
    assert names == ["mbconv_k3_e3", "mbconv", "mbconv_k5_e3", "mbconv_k5_e6"]
    from spinenet.plan.counting import block_cost  # planned blocks are counted from their plan

    params = [block_cost(n, 40, 40, 1, 1, False)[0] for n in names]
    madds = [block_cost(n, 40, 40, 8, 8, False)[1] for n in names]
    assert params[0] < params[1] < params[3] and params[0] < params[2] < params[3]
    # kernel 3, expand 6: expand 40*240 + BN, depthwise 9*240 + BN, SE 240*8+8 + 8*240+240, project 240*40 + BN.
    assert params[1] == 40 * 240 + 4 * 240 + 9 * 240 + 4 * 240 + 240 * 8 + 8 + 8 * 240 + 240 + 240 * 40 + 4 * 40
    assert madds[1] == 64 * (40 * 240 + 9 * 240 + 240 + 240 * 40) + 240 * 8 + 8 * 240


# ------------------------------------------------------------- mobile space
def test_mobile_space_encodes_the_seed():
    params = MOBILE_SPACE.encode(SPINENET_MOBILE_49)
    assert MOBILE_SPACE.from_params(params) == SPINENET_MOBILE_49
    assert {params[f"kernel_size_{b}"] for b in range(1, 17)} == {0}
    assert {params[f"expand_ratio_{b}"] for b in range(1, 17)} == {1}
    for name, (low, high) in MOBILE_SPACE.parameters.items():
        assert 0 == low < high, name
    assert not ScalePermutedSpace().contains(SPINENET_MOBILE_49)
    with pytest.raises(SpaceError, match="family 'mobile', space has 'spinenet'"):
        ScalePermutedSpace().encode(SPINENET_MOBILE_49)


def test_mobile_space_samples_valid_genomes_under_a_budget():
    budget = CostBudget(max_multiply_adds=1.1 * network_cost(SPINENET_MOBILE_49, 384, endpoints_num_filters=48).multiply_adds,
                        input_size=384, endpoints_num_filters=48)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(MOBILE_SPACE.encode(SPINENET_MOBILE_49))
    seen = []

    def objective(trial):
        genome = MOBILE_SPACE.sample(trial, constraint=budget)
        seen.append(genome)
        return 0.0

    study.optimize(objective, n_trials=12)
    assert seen[0] == SPINENET_MOBILE_49
    fns = set()
    for genome in seen:
        assert genome.family == "mobile" and MOBILE_SPACE.contains(genome)
        assert network_cost(genome, 384, endpoints_num_filters=48).multiply_adds <= budget.max_multiply_adds
        fns |= {b.block_fn for b in genome.blocks}
    assert len(fns) > 1
    rng = random.Random(3)
    child = MOBILE_SPACE.mutate(SPINENET_MOBILE_49, rng)
    assert child.fingerprint != SPINENET_MOBILE_49.fingerprint and MOBILE_SPACE.contains(child)


def test_space_refuses_missing_variants_and_foreign_block_fns():
    with pytest.raises(SpaceError, match="no block fn is 'mbconv'"):
        ScalePermutedSpace(family="mobile", block_fns=["mbconv"], block_options={"kernel_size": [3, 7]})
    with pytest.raises(SpaceError, match="belongs to the spinenet family"):
        ScalePermutedSpace(family="mobile", block_fns=["bottleneck"])


def test_mobile_experiment_file():
    from nas.experiment import load_experiment

    experiment = load_experiment(os.path.join(ROOT, "experiments", "mobile_search.yaml"))
    space = experiment.search_space.build()
    seeds = experiment.search_space.load_seed_genomes()
    assert seeds == [SPINENET_MOBILE_49] and space.from_params(space.encode(seeds[0])) == SPINENET_MOBILE_49
    scaling = {k: v for k, v in experiment.model.decode_kwargs().items() if k != "activation"}
    cost = network_cost(SPINENET_MOBILE_49, experiment.task.data.image_size, **scaling)
    assert 0.8 * experiment.search.constraints.max_multiply_adds < cost.multiply_adds \
        <= experiment.search.constraints.max_multiply_adds
    assert experiment.task.head.separable


def test_separable_head_cost():
    from nas.tasks.detection.cost import retinanet_head_cost

    cost = retinanet_head_cost(num_classes=91, input_size=384, min_level=3, max_level=7, in_channels=48,
                               num_convs=4, num_filters=48, separable=True)
    tower = 4 * (9 * 48 + 48 * 48 + 48) * 2 + 2 * 4 * 5 * 4 * 48
    assert cost.params == tower + (9 * 48 + 48 * 819 + 819) + (9 * 48 + 48 * 36 + 36)


# ------------------------------------------------------------------- Keras
@pytest.fixture(scope="module")
def mobile49():
    from spinenet.decoder import build_spinenet_mobile

    # relu: the profiler counts swish's multiply too, which no cost model figure includes.
    return build_spinenet_mobile("49", input_shape=(128, 128, 3), activation="relu")


def test_keras_mobile49_matches_reference_and_cost_model(mobile49):
    assert mobile49.count_params() == REFERENCE_MOBILE_PARAMS["49"]
    assert mobile49.output_shape == {str(l): (None, 128 // 2**l, 128 // 2**l, 48) for l in range(3, 8)}
    plan = plan_network(SPINENET_MOBILE_49, Scaling(**MOBILE_SCALING_MAP["49"], family="mobile"))
    keras_names = {layer.name for layer in mobile49.layers}
    assert {layer.name for layer in plan.layers} <= keras_names  # one plan, built and counted


def test_mobile_multiply_adds_within_one_percent_of_profiler(mobile49):
    ours = network_cost(SPINENET_MOBILE_49, 128, **MOBILE_SCALING_MAP["49"]).multiply_adds
    assert ours == pytest.approx(_profiler_multiply_adds(mobile49, 128), rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("model_id, shape", [("49S", (128, 128, 3)), ("49XS", (128, 256, 3))])
def test_keras_small_mobile_scalings(model_id, shape):
    from spinenet.decoder import build_spinenet_mobile

    model = build_spinenet_mobile(model_id, input_shape=shape)
    assert model.count_params() == REFERENCE_MOBILE_PARAMS[model_id] == \
        network_cost(SPINENET_MOBILE_49, shape[:2], **MOBILE_SCALING_MAP[model_id]).params
    filters = MOBILE_SCALING_MAP[model_id]["endpoints_num_filters"]
    out = model(np.zeros((2, *shape), np.float32))
    for level, tensor in out.items():
        assert tensor.shape == (2, shape[0] // 2 ** int(level), shape[1] // 2 ** int(level), filters)


@pytest.mark.slow
def test_searched_mobile_genome_params_equal_keras():
    from spinenet.decoder import decode

    genome = MOBILE_SPACE.random_genome(random.Random(5))
    scaling = {"filter_size_scale": 0.5, "endpoints_num_filters": 16, "block_repeats": 2}
    model = decode(genome, input_shape=(128, 128, 3), init_stochastic_depth_rate=0.2, **scaling)
    assert model.count_params() == count_params(genome, **scaling)


@pytest.mark.slow
def test_mobile_save_and_load_round_trip(mobile49, tmp_path):
    import tf_keras

    path = tmp_path / "mobile49.keras"
    mobile49.save(path)
    loaded = tf_keras.models.load_model(path)
    assert loaded.genome == SPINENET_MOBILE_49 and loaded.get_config()["genome"]["family"] == "mobile"
    x = np.random.default_rng(0).random((2, 128, 128, 3)).astype(np.float32)
    expected, actual = mobile49(x), loaded(x)
    for level in expected:
        np.testing.assert_allclose(actual[level], expected[level], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_mobile_detector_params_equal_cost(mobile49):
    from nas.tasks.detection.config import HeadConfig
    from nas.tasks.detection.cost import retinanet_head_cost
    from nas.tasks.detection.head import build_detector

    detector = build_detector(mobile49, 91, HeadConfig(num_filters=48, separable=True))
    head = retinanet_head_cost(num_classes=91, input_size=128, min_level=3, max_level=7, in_channels=48,
                               num_filters=48, separable=True)
    assert detector.count_params() == REFERENCE_MOBILE_PARAMS["49"] + head.params


def test_cli_decode_and_draw_mobile(tmp_path, capsys):
    from nas.cli import main

    assert main(["decode", "--model-id", "mobile-49XS", "--input-size", "128", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"] == REFERENCE_MOBILE_PARAMS["49XS"]
    assert report["endpoints"]["3"] == [16, 16, 24] and report["scaling"]["activation"] == "swish"
    assert main(["draw", "--model-id", "mobile-49", "-o", str(tmp_path / "m.png")]) == 0
    assert main(["draw", "--genome", "spinenet-mobile-49", "-o", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "m.png").stat().st_size > 10_000
    from visualize.graph import genome_graph

    assert genome_graph(SPINENET_MOBILE_49).nodes["stem1"]["level"] == 1
