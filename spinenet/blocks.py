"""Keras block functions: plain ``tensor -> tensor`` functions with hierarchical layer names.

Each block function takes the input tensor, its ``filters``, whether the
shortcut is projected, a stochastic-depth ``drop_rate``, the shared
:class:`LayerSettings` and a ``name`` prefix, and returns the output tensor.
They are looked up by name through :mod:`search_spaces.block_fns`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf
import tf_keras


@tf_keras.saving.register_keras_serializable(package="spinenas")
class StochasticDepth(tf_keras.layers.Layer):
    """Drops a residual branch for whole samples during training (Huang et al., 2016).

    At inference it is the identity; in training each sample's branch is kept
    with probability ``1 - rate`` and rescaled so its expectation is unchanged.
    """

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = [tf.shape(inputs)[0]] + [1] * (len(inputs.shape) - 1)
        mask = tf.floor(keep + tf.random.uniform(shape, dtype=inputs.dtype))
        return inputs / keep * mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


def _fresh(config):
    return dict(config) if isinstance(config, dict) else config


@tf_keras.saving.register_keras_serializable(package="spinenas")
class NearestUpsampling(tf_keras.layers.Layer):
    """Nearest-neighbour upsampling by an integer factor, as a broadcast and a reshape.

    Gives the same values as ``UpSampling2D(interpolation="nearest")``, but its
    gradient is a plain reduction, which XLA compiles on every device (the
    gradient of ``UpSampling2D`` has no XLA CPU kernel).
    """

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)

    def call(self, inputs):
        shape = tf.shape(inputs)
        n, h, w, c = shape[0], shape[1], shape[2], shape[3]
        x = tf.reshape(inputs, [n, h, 1, w, 1, c])
        x = tf.broadcast_to(x, [n, h, self.scale, w, self.scale, c])
        return tf.reshape(x, [n, h * self.scale, w * self.scale, c])

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else h * self.scale, None if w is None else w * self.scale, c)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@dataclasses.dataclass(frozen=True)
class LayerSettings:
    """Settings every convolution, batch norm and activation of a backbone shares."""

    activation: str = "relu"
    norm_momentum: float = 0.99
    norm_epsilon: float = 1e-3
    use_sync_bn: bool = False
    # Serialized configs: a fresh initializer per layer, because one shared
    # unseeded instance would give every layer identical initial weights.
    kernel_initializer: Any = "VarianceScaling"
    kernel_regularizer: Any = None

    def conv(self, x, filters: int, kernel_size: int, *, strides: int = 1, name: str):
        """Bias-free 'same'-padded convolution."""
        return tf_keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer=tf_keras.initializers.get(_fresh(self.kernel_initializer)),
            kernel_regularizer=tf_keras.regularizers.get(_fresh(self.kernel_regularizer)),
            name=name,
        )(x)

    def norm(self, x, *, name: str):
        """Batch normalization over channels."""
        return tf_keras.layers.BatchNormalization(
            momentum=self.norm_momentum,
            epsilon=self.norm_epsilon,
            synchronized=self.use_sync_bn,
            name=name,
        )(x)

    def act(self, x, *, name: str):
        """The backbone's activation."""
        return tf_keras.layers.Activation(self.activation, name=name)(x)

    def conv_bn_act(self, x, filters, kernel_size, *, strides=1, name: str, activate=True):
        """Convolution, batch norm and (optionally) activation, named ``name_conv/_bn/_act``."""
        x = self.norm(self.conv(x, filters, kernel_size, strides=strides, name=f"{name}_conv"), name=f"{name}_bn")
        return self.act(x, name=f"{name}_act") if activate else x


def _finish(x, shortcut, drop_rate: float, layers: LayerSettings, name: str):
    if drop_rate > 0:
        x = StochasticDepth(drop_rate, name=f"{name}_drop")(x)
    x = tf_keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.act(x, name=f"{name}_out")


def bottleneck(x, filters: int, *, use_projection: bool, drop_rate: float, layers: LayerSettings, name: str):
    """1x1 reduce, 3x3, 1x1 expand to ``4 * filters``, plus the (projected) shortcut."""
    shortcut = x
    if use_projection:
        shortcut = layers.conv_bn_act(x, 4 * filters, 1, name=f"{name}_shortcut", activate=False)
    x = layers.conv_bn_act(x, filters, 1, name=f"{name}_1")
    x = layers.conv_bn_act(x, filters, 3, name=f"{name}_2")
    x = layers.conv_bn_act(x, 4 * filters, 1, name=f"{name}_3", activate=False)
    return _finish(x, shortcut, drop_rate, layers, name)


def residual(x, filters: int, *, use_projection: bool, drop_rate: float, layers: LayerSettings, name: str):
    """Two 3x3 convolutions of ``filters`` channels, plus the (projected) shortcut."""
    shortcut = x
    if use_projection:
        shortcut = layers.conv_bn_act(x, filters, 1, name=f"{name}_shortcut", activate=False)
    x = layers.conv_bn_act(x, filters, 3, name=f"{name}_1")
    x = layers.conv_bn_act(x, filters, 3, name=f"{name}_2", activate=False)
    return _finish(x, shortcut, drop_rate, layers, name)
