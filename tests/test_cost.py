"""Analytic cost model against the reference figures, Keras and TensorFlow's profiler."""

import random

import pytest

from search_spaces.genome import Genome
from spinenet import SCALING_MAP, SPINENET_49
from spinenet.cost import count_multiply_adds, count_params, network_cost
from spinenet.scaling import DecodeError
from tests.conftest import TINY, TINY_SIZE, random_genome

REFERENCE_PARAMS = {"49S": 9_146_351, "49": 21_920_192, "96": 36_385_728, "143": 60_413_888, "190": 126_849_216}


@pytest.mark.parametrize("model_id", list(REFERENCE_PARAMS))
def test_params_match_reference_without_tensorflow(model_id):
    assert count_params(SPINENET_49, **SCALING_MAP[model_id]) == REFERENCE_PARAMS[model_id]


def test_multiply_adds_match_reference_conv_sums():
    # Convolution multiply-adds of the reference's traced graph (SPINENET.md).
    assert count_multiply_adds(SPINENET_49, 640, **SCALING_MAP["49"]) / 1e9 == pytest.approx(28.26, abs=0.005)
    assert count_multiply_adds(SPINENET_49, 1024, **SCALING_MAP["96"]) / 1e9 == pytest.approx(119.05, abs=0.005)


def test_multiply_adds_scale_with_area_and_accept_rectangles():
    square = count_multiply_adds(SPINENET_49, 256)
    assert count_multiply_adds(SPINENET_49, 512) == 4 * square
    assert count_multiply_adds(SPINENET_49, (256, 512)) == 2 * square


def test_params_do_not_depend_on_input_size():
    assert network_cost(SPINENET_49, 256).params == network_cost(SPINENET_49, 1024).params


def test_input_size_must_divide_by_deepest_stride():
    with pytest.raises(DecodeError, match="input height 100 is not divisible by 128"):
        count_multiply_adds(SPINENET_49, 100)


def test_bad_scaling_is_refused():
    with pytest.raises(DecodeError, match="filter_size_scale must be a positive number"):
        count_params(SPINENET_49, filter_size_scale=0)
    with pytest.raises(DecodeError, match="block_repeats must be a positive integer"):
        count_params(SPINENET_49, block_repeats=1.5)


def test_dead_blocks_cost_nothing():
    specs = SPINENET_49.to_block_specs() + [(6, "residual", (3, 4), False)]
    assert count_params(Genome.from_block_specs(specs)) == count_params(SPINENET_49)


def _keras_params(genome, **scaling):
    from spinenet.decoder import decode

    return decode(genome, input_shape=(TINY_SIZE, TINY_SIZE, 3), **scaling).count_params()


@pytest.mark.parametrize("seed", range(6))
def test_params_equal_keras_on_random_genomes(seed):
    rng = random.Random(seed)
    genome = random_genome(rng, num_intermediate=rng.randint(0, 10))
    scaling = dict(TINY, block_repeats=rng.choice([1, 2]), resample_alpha=rng.choice([0.25, 0.5, 1.0]))
    assert count_params(genome, **scaling) == _keras_params(genome, **scaling)


def test_params_equal_keras_on_hand_made_genome():
    genome = Genome.from_block_specs(
        [(5, "residual", (0, 1), False), (2, "residual", (1, 2), False), (3, "residual", (2, 3), True),
         (4, "bottleneck", (3, 4), True), (5, "bottleneck", (2, 5), True)],
        min_level=3, max_level=5)
    assert count_params(genome, **TINY) == _keras_params(genome, **TINY)


def _profiler_multiply_adds(model, size):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([1, size, size, 3], tf.float32)
    graph = convert_variables_to_constants_v2(
        tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                            options=options)
    return profile.total_float_ops / 2


@pytest.mark.slow
@pytest.mark.parametrize("genome_name", ["spinenet49", "random"])
def test_multiply_adds_within_one_percent_of_profiler(genome_name):
    from spinenet.decoder import decode

    genome = SPINENET_49 if genome_name == "spinenet49" else random_genome(random.Random(7), num_intermediate=8)
    model = decode(genome, input_shape=(TINY_SIZE, TINY_SIZE, 3))
    assert count_multiply_adds(genome, TINY_SIZE) == pytest.approx(
        _profiler_multiply_adds(model, TINY_SIZE), rel=0.01)
