"""Each zero-cost proxy against numpy on a two-layer network, and what a proxy does when the numbers break."""

import math
import random

import numpy as np
import pytest

from nas.screening import grad_norm, naswot, rank_ensemble, snip, synflow, zen
from tests.conftest import random_genome

PROXY_MODULES = {"naswot": naswot, "synflow": synflow, "snip": snip, "grad_norm": grad_norm, "zen": zen}
RNG = np.random.default_rng(0)
W1 = RNG.standard_normal((3, 6)).astype(np.float32)
W2 = RNG.standard_normal((6, 2)).astype(np.float32)
IMAGES = RNG.standard_normal((5, 3)).astype(np.float32)
TARGETS = RNG.standard_normal((5, 2)).astype(np.float32)


def two_layers(w1=W1, w2=W2, norm=False):
    """``relu(x @ w1) @ w2`` (batch norm after the first layer when ``norm``), no biases: small enough for numpy.

    With ``norm`` the output is a dict of one level, as a backbone's endpoints are.
    """
    import tf_keras

    x = tf_keras.Input((w1.shape[0],))
    first = tf_keras.layers.Dense(w1.shape[1], use_bias=False)
    h = first(x)
    if norm:
        h = tf_keras.layers.BatchNormalization()(h)
    h = tf_keras.layers.Activation("relu")(h)
    last = tf_keras.layers.Dense(w2.shape[1], use_bias=False)
    model = tf_keras.Model(x, {"3": last(h)} if norm else last(h))
    first.kernel.assign(w1)
    last.kernel.assign(w2)
    return model


def squared_error(outputs, targets):
    import tensorflow as tf

    [outputs] = tf.nest.flatten(outputs)
    return tf.reduce_mean(tf.reduce_sum(tf.square(outputs - targets), axis=1))


def numpy_gradients(x, t, w1, w2):
    """dL/dw1, dL/dw2 of :func:`squared_error` for ``relu(x @ w1) @ w2``, by the chain rule."""
    x, t, w1, w2 = (a.astype(np.float64) for a in (x, t, w1, w2))
    z = x @ w1
    h = np.maximum(z, 0)
    dy = 2 * (h @ w2 - t) / len(x)
    return x.T @ (dy @ w2.T * (z > 0)), h.T @ dy


def test_naswot_is_the_log_determinant_of_the_agreement_kernel():
    codes = (IMAGES.astype(np.float64) @ W1 > 0).astype(np.float64)
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T  # units where images i and j are both on or both off
    sign, expected = np.linalg.slogdet(kernel)
    assert sign > 0
    assert naswot.score(two_layers(), (IMAGES, TARGETS), squared_error, 0) == pytest.approx(expected, abs=1e-9)


def test_synflow_is_the_flow_of_the_positive_network_on_a_ones_input():
    a, b = np.abs(W1).astype(np.float64), np.abs(W2).astype(np.float64)
    hidden = np.ones(3) @ a  # all positive: every ReLU passes
    flow = np.sum(a * np.outer(np.ones(3), b.sum(axis=1))) + np.sum(b * hidden[:, None])
    # A bias-free ReLU network is homogeneous of degree 1 in each layer: its flow is layers x output.
    assert flow == pytest.approx(2 * np.sum(hidden @ b))
    assert synflow.score(two_layers(), (IMAGES, TARGETS), None, 0) == pytest.approx(math.log(flow), abs=1e-5)


def test_snip_and_grad_norm_match_the_chain_rule():
    g1, g2 = numpy_gradients(IMAGES, TARGETS, W1, W2)
    batch = (IMAGES, TARGETS)
    expected_snip = math.log(np.sum(np.abs(g1 * W1)) + np.sum(np.abs(g2 * W2)))
    expected_norm = 0.5 * math.log(np.sum(g1 ** 2) + np.sum(g2 ** 2))
    assert snip.score(two_layers(), batch, squared_error, 0) == pytest.approx(expected_snip, abs=1e-5)
    assert grad_norm.score(two_layers(), batch, squared_error, 0) == pytest.approx(expected_norm, abs=1e-5)


def numpy_zen(images, seed, epsilon=1e-3):
    """Zen-score of ``relu(bn(x @ W1)) @ W2`` with batch norm in training mode (gamma 1, beta 0)."""
    def forward(x):
        z = x.astype(np.float64) @ W1
        variance = z.var(axis=0)  # the biased batch variance batch norm divides by
        return np.maximum((z - z.mean(axis=0)) / np.sqrt(variance + epsilon), 0) @ W2, variance

    noise = np.random.default_rng(seed).standard_normal(images.shape).astype(np.float32)
    clean, variance = forward(images)
    mixed, _ = forward(images + zen.MIXUP * noise)
    response = np.mean(np.sum(np.abs(clean - mixed), axis=1))
    return math.log(response / zen.MIXUP) + 0.5 * math.log(np.mean(variance))


def test_zen_matches_numpy():
    assert zen.score(two_layers(norm=True), (IMAGES, TARGETS), None, 3) == pytest.approx(numpy_zen(IMAGES, 3),
                                                                                       abs=1e-3)


def test_zen_reads_a_tiny_batch_variance_directly():
    """Inverting the moving-average update loses a variance of 1e-8 to float32 rounding; the BN input does not."""
    import tensorflow as tf
    import tf_keras

    images = IMAGES * 1e-4
    variance = (images.astype(np.float64) @ W1).var(axis=0)
    norm = tf_keras.layers.BatchNormalization()
    norm(tf.constant(images @ W1), training=True)
    inverted = (norm.moving_variance.numpy() - norm.momentum * 1.0) / (1.0 - norm.momentum)  # the old way
    assert np.all(inverted <= 0) and np.all(variance > 1e-10)  # clamped to zero: log(0) moved the score by 372
    assert zen.score(two_layers(norm=True), (images, TARGETS), None, 3) == pytest.approx(numpy_zen(images, 3),
                                                                                       abs=1e-3)


def broken(kind):
    """A network whose numbers are not finite: a NaN weight, or weights whose product overflows float32."""
    import tf_keras

    if kind == "nan":
        w1 = W1.copy()
        w1[0, 0] = np.nan
        return two_layers(w1, norm=True)
    x = tf_keras.Input((3,))
    h = x
    for _ in range(5):  # (4e20)**5 times the input: beyond float32 even at synflow's smallest scale, 2**-96
        layer = tf_keras.layers.Dense(4, use_bias=False)
        h = tf_keras.layers.Activation("relu")(layer(h))
        layer.kernel.assign(np.full(layer.kernel.shape, 1e20, np.float32))
    return tf_keras.Model(x, h)


@pytest.mark.parametrize("kind", ["nan", "overflow"])
@pytest.mark.parametrize("name", sorted(PROXY_MODULES))
def test_a_proxy_of_a_broken_network_fails_instead_of_scoring(name, kind):
    value = PROXY_MODULES[name].score(broken(kind), (IMAGES, TARGETS[:, :1]), squared_error, 0)
    assert math.isnan(value), f"{name} scored a {kind} network {value}"


def test_the_ensemble_skips_a_failed_member():
    nan = math.nan
    assert rank_ensemble({"a": [1.0, nan, 3.0], "b": [2.0, 1.0, nan]}) == [0.5, 0.0, 1.0]
    ensemble = rank_ensemble({"a": [1.0, nan, 3.0], "b": [2.0, nan, 1.0]})
    assert ensemble[0] == ensemble[2] == 0.5 and math.isnan(ensemble[1])  # nothing to rank it by


@pytest.mark.parametrize("proxy", ["synflow", "-synflow", "ensemble", "-ensemble"])
def test_a_failed_score_is_the_worst_screening_value_either_way_round(tmp_path, proxy):
    from nas.experiment import load_experiment
    from nas.search.screen import Screener
    from tests.test_search import tiny_experiment

    class Scores:  # genome 0's model is broken: every proxy failed on it
        def score(self, genomes, config, names, seed, batch_size=8):
            return [{n: math.nan if i == 0 else float(i) for n in names} for i, _ in enumerate(genomes)]

    genomes = [random_genome(random.Random(i), num_intermediate=4, min_level=3, max_level=5) for i in range(4)]
    experiment = load_experiment(tiny_experiment(tmp_path, search={"screening": {"proxy": proxy}}))
    screener = Screener(experiment, Scores(), num_classes=3)
    values = screener.values(genomes)
    assert values[0] == -math.inf and all(math.isfinite(v) for v in values[1:])
    assert screener.best(genomes) is not genomes[0]
