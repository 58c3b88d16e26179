"""Decoder: parity with the reference SpineNet, shapes, names, registry and serialization."""

import numpy as np
import pytest
import tf_keras

from search_spaces.block_fns import BLOCK_FNS, register_block_fn
from search_spaces.genome import Genome
from search_spaces.genome_rules import GenomeError
from spinenet import SPINENET_49, build_spinenet, decode
from spinenet.blocks import StochasticDepth
from spinenet.cost import count_params
from spinenet.scaling import DecodeError
from tests.conftest import TINY, TINY_SIZE
from tests.test_cost import REFERENCE_PARAMS


@pytest.mark.slow
@pytest.mark.parametrize("model_id", list(REFERENCE_PARAMS))
def test_keras_params_match_reference(model_id):
    assert build_spinenet(model_id).count_params() == REFERENCE_PARAMS[model_id]


def test_endpoint_shapes_at_640():
    model = build_spinenet("49S")
    assert model.output_shape == {str(l): (None, 640 // 2**l, 640 // 2**l, 128) for l in range(3, 8)}


def tiny_model(genome=SPINENET_49, input_shape=(TINY_SIZE, TINY_SIZE, 3), **options):
    return decode(genome, input_shape=input_shape, **{**TINY, **options})


def test_endpoints_of_rectangular_batch():
    model = tiny_model(input_shape=(256, 128, 3))
    out = model(np.zeros((2, 256, 128, 3), np.float32))
    assert sorted(out) == ["3", "4", "5", "6", "7"]
    for level, tensor in out.items():
        assert tensor.shape == (2, 256 // 2 ** int(level), 128 // 2 ** int(level), 16)


def test_unknown_spatial_dims():
    model = tiny_model(input_shape=(None, None, 3))
    assert model.output_shape["5"] == (None, None, None, 16)
    assert model(np.zeros((1, 128, 384, 3), np.float32))["5"].shape == (1, 4, 12, 16)


def test_layer_names_follow_the_genome():
    names = {layer.name for layer in tiny_model().layers}
    for name in ("stem_conv", "stem_pool", "stem_block1_unit1_1_conv", "stem_block2_unit1_3_bn",
                 "block2_in0_l2_reduce_conv", "block2_in0_l2_down_conv", "block2_in0_l2_pool1",
                 "block11_in1_l5_up", "block7_in1_l4_expand_bn", "block13_merge", "block15_unit1_out",
                 "endpoint3_conv", "endpoint7_act"):
        assert name in names


def test_stem_and_group_projection_rules():
    # Width 0.25: the stem's 64 channels already equal 4 * 16, so nothing is projected.
    layers = {layer.name for layer in tiny_model(block_repeats=2).layers}
    assert "stem_block1_unit1_shortcut_conv" not in layers
    assert "block1_unit2_1_conv" in layers and "block1_unit2_shortcut_conv" not in layers
    # Width 0.5: 64 -> 4 * 32 channels needs a projection; the second stem block does not.
    layers = {layer.name for layer in tiny_model(filter_size_scale=0.5).layers}
    assert "stem_block1_unit1_shortcut_conv" in layers
    assert "stem_block2_unit1_shortcut_conv" not in layers


def test_invalid_genome_raises_genome_error():
    specs = SPINENET_49.to_block_specs()
    specs[3] = (4, "bottleneck", (2, 7), False)
    with pytest.raises(GenomeError, match="block 4"):
        decode(specs)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"input_shape": (100, 128, 3)}, "input height 100 is not divisible by 128"),
        ({"input_shape": (128, 3)}, "input_shape must be"),
        ({"activation": "relu6x"}, "unknown activation 'relu6x'"),
        ({"filter_size_scale": -1}, "filter_size_scale must be a positive number"),
        ({"init_stochastic_depth_rate": 1.0}, r"init_stochastic_depth_rate must be in \[0, 1\)"),
        ({"kernel_initializer": "no_such_init"}, "invalid kernel_initializer"),
    ],
)
def test_bad_settings_raise_decode_error(options, message):
    with pytest.raises(DecodeError, match=message):
        tiny_model(**options)


def test_custom_block_fn_from_registry():
    def plain(x, filters, *, use_projection, drop_rate, layers, name):
        return layers.conv_bn_act(x, filters, 3, name=f"{name}_a")

    register_block_fn("plain", expansion=1, build=plain,
                      count_params=lambda c_in, f, proj: 9 * c_in * f + 4 * f,
                      count_multiply_adds=lambda c_in, f, h, w, proj: h * w * 9 * c_in * f)
    try:
        specs = [(l, "plain" if i % 3 == 0 else fn, ps, o) for i, (l, fn, ps, o) in enumerate(SPINENET_49.to_block_specs())]
        genome = Genome.from_block_specs(specs)
        model = tiny_model(genome)
        assert "block1_unit1_a_conv" in {layer.name for layer in model.layers}
        assert model.count_params() == count_params(genome, **TINY)
        assert model(np.zeros((1, TINY_SIZE, TINY_SIZE, 3), np.float32))["3"].shape == (1, 16, 16, 16)
    finally:
        BLOCK_FNS.pop("plain")


def test_swish_and_regularizer():
    model = tiny_model(activation="swish", kernel_regularizer=1e-4)
    assert model.get_layer("stem_act").activation.__name__ == "swish"
    convs = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.Conv2D)]
    assert len(model.losses) == len(convs)


def test_stochastic_depth_rates_grow_with_depth():
    model = tiny_model(init_stochastic_depth_rate=0.3)
    rates = {layer.name: layer.rate for layer in model.layers if isinstance(layer, StochasticDepth)}
    assert rates["block15_unit1_drop"] == pytest.approx(0.3)
    assert rates["block1_unit1_drop"] == pytest.approx(0.3 / 15)
    assert not any(name.startswith("stem") for name in rates)
    x = np.random.default_rng(0).random((4, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x, training=False)["3"], model(x, training=False)["3"])


def test_save_and_reload_keeps_genome_and_outputs(tmp_path):
    genome = Genome.from_block_specs(
        [(5, "residual", (0, 1), False), (2, "residual", (1, 2), False), (3, "residual", (2, 3), True),
         (4, "bottleneck", (3, 4), True), (5, "bottleneck", (2, 5), True)],
        min_level=3, max_level=5)
    model = decode(genome, input_shape=(64, 64, 3), **TINY, kernel_regularizer=1e-4)
    assert model.get_config()["genome"] == genome.to_dict()
    path = tmp_path / "searched.keras"
    model.save(path)
    loaded = tf_keras.models.load_model(path)
    assert loaded.genome == genome
    x = np.random.default_rng(1).random((2, 64, 64, 3)).astype(np.float32)
    expected, actual = model(x), loaded(x)
    for level in expected:
        np.testing.assert_allclose(actual[level], expected[level], rtol=1e-5, atol=1e-6)
    # A rebuilt model must draw fresh initial weights per layer, not one shared draw.
    rebuilt = type(loaded).from_config(loaded.get_config())
    kernels = [rebuilt.get_layer(n).kernel.numpy() for n in ("block1_unit1_1_conv", "block1_unit1_2_conv")]
    assert not np.allclose(kernels[0], kernels[1])


def test_nearest_upsampling_equals_keras_upsampling():
    from spinenet.blocks import NearestUpsampling

    x = np.random.default_rng(2).random((2, 3, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(NearestUpsampling(4)(x), tf_keras.layers.UpSampling2D(4)(x))


def test_training_step_compiles_with_xla():
    # Regression: UpSampling2D's gradient has no XLA CPU kernel, so jit_compile training failed.
    import tensorflow as tf

    genome = Genome.from_block_specs(
        [(5, "residual", (0, 1), False), (3, "residual", (1, 2), True), (4, "residual", (2, 3), True),
         (5, "residual", (3, 4), True)], min_level=3, max_level=5)
    model = decode(genome, input_shape=(32, 32, 3), **TINY)

    @tf.function(jit_compile=True)
    def gradient_norm(x):
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_mean(f) for f in model(x, training=True).values()])
        return tf.linalg.global_norm(tape.gradient(loss, model.trainable_variables))

    assert float(gradient_norm(tf.ones([2, 32, 32, 3]))) > 0
