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

from search_spaces.block_fns import get_block_fn
from spinenet.plan.builder import PlanBuilder


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
    """Nearest-neighbour upsampling by an integer factor.

    In training it is a broadcast and a reshape: its gradient is a plain
    reduction, which XLA compiles on every device (the gradient of
    ``UpSampling2D`` has no XLA CPU kernel). At inference it is a nearest
    resize, the same values: LiteRT runs that as one RESIZE_NEAREST_NEIGHBOR
    kernel, where the broadcast costs it hundreds of times more (72 ms
    against 0.19 ms for a 2x2x112 map upsampled 64 times, one thread).
    """

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)

    def call(self, inputs, training=None):
        shape = tf.shape(inputs)
        n, h, w, c = shape[0], shape[1], shape[2], shape[3]
        if not training:
            return tf.image.resize(inputs, [h * self.scale, w * self.scale], method="nearest")
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


@tf_keras.saving.register_keras_serializable(package="spinenas")
def hard_sigmoid(x):
    """``relu6(x + 3) / 6``: the MobileNetV3 gate (Keras 2's own ``hard_sigmoid`` is ``0.2 x + 0.5``).

    It scales by 0.16667, as the TF Model Garden does, not by 1/6: the 2e-5
    difference compounds over the SE gates of a Mobile SpineNet to 3e-4 of its
    outputs, and a Model Garden checkpoint should give the Model Garden's.
    """
    return tf.nn.relu6(x + 3.0) * 0.16667


_NAMED_ACTIVATIONS = {"hard_sigmoid": hard_sigmoid}


def build_layer(layer, inputs: list, layers: LayerSettings):
    """The Keras layer a :class:`~spinenet.plan.builder.PlanLayer` describes, applied to ``inputs``."""
    kind, name = layer.kind, layer.name
    if kind == "conv":
        return tf_keras.layers.Conv2D(
            layer.channels, layer.kernel, strides=layer.strides, padding="same", use_bias=layer.use_bias,
            kernel_initializer=tf_keras.initializers.get(_fresh(layers.kernel_initializer)),
            kernel_regularizer=tf_keras.regularizers.get(_fresh(layers.kernel_regularizer)), name=name,
        )(inputs[0])
    if kind == "dwconv":
        return tf_keras.layers.DepthwiseConv2D(
            layer.kernel, strides=layer.strides, padding="same", use_bias=False,
            depthwise_initializer=tf_keras.initializers.get(_fresh(layers.kernel_initializer)),
            depthwise_regularizer=tf_keras.regularizers.get(_fresh(layers.kernel_regularizer)), name=name,
        )(inputs[0])
    if kind == "bn":
        return layers.norm(inputs[0], name=name)
    if kind == "act":
        activation = layer.activation or layers.activation
        return tf_keras.layers.Activation(_NAMED_ACTIVATIONS.get(activation, activation), name=name)(inputs[0])
    if kind == "maxpool":
        return tf_keras.layers.MaxPool2D(layer.kernel, strides=layer.strides, padding="same", name=name)(inputs[0])
    if kind == "upsample":
        return NearestUpsampling(layer.scale, name=name)(inputs[0])
    if kind == "add":
        return tf_keras.layers.Add(name=name)(inputs)
    if kind == "mean":
        return tf_keras.layers.GlobalAveragePooling2D(keepdims=True, name=name)(inputs[0])
    if kind == "mul":
        return tf_keras.layers.Multiply(name=name)(inputs)
    if kind == "drop":
        return StochasticDepth(layer.rate, name=name)(inputs[0])
    if kind == "custom":
        build = get_block_fn(layer.block_fn).resolve_build()
        if build is None:
            raise ValueError(f"block fn {layer.block_fn!r} has neither a plan nor a Keras build registered "
                             "(search_spaces.block_fns.implement_block_fn)")
        return build(inputs[0], layer.filters, use_projection=layer.use_projection, drop_rate=layer.rate,
                     layers=layers, name=name)
    raise ValueError(f"layer {name}: unknown kind {kind!r}")


def build_plan_layers(plan_layers, tensors: dict, layers: LayerSettings) -> dict:
    """Build ``plan_layers`` in order; ``tensors`` maps names to Keras tensors and gains every output."""
    for layer in plan_layers:
        tensors[layer.name] = build_layer(layer, [tensors[i] for i in layer.inputs], layers)
    return tensors


def planned_block(block_fn: str, x, filters: int, *, use_projection: bool, drop_rate: float,
                  layers: LayerSettings, name: str, **extra):
    """Build the registered plan-backed block ``block_fn`` on Keras tensor ``x``."""
    spec = get_block_fn(block_fn)
    builder = PlanBuilder(int(x.shape[-1]), 0, "x")
    out = spec.resolve_plan()("x", filters, use_projection=use_projection, drop_rate=drop_rate, layers=builder,
                              name=name, **dict(spec.options), **extra)
    return build_plan_layers(builder.layers, {"x": x}, layers)[out]


def bottleneck(x, filters: int, *, use_projection: bool, drop_rate: float, layers: LayerSettings, name: str):
    """1x1 reduce, 3x3, 1x1 expand to ``4 * filters``, plus the (projected) shortcut.

    Built from its plan, :func:`spinenet.plan.block_plans.bottleneck`.
    """
    return planned_block("bottleneck", x, filters, use_projection=use_projection, drop_rate=drop_rate,
                         layers=layers, name=name)


def residual(x, filters: int, *, use_projection: bool, drop_rate: float, layers: LayerSettings, name: str):
    """Two 3x3 convolutions of ``filters`` channels, plus the (projected) shortcut.

    Built from its plan, :func:`spinenet.plan.block_plans.residual`.
    """
    return planned_block("residual", x, filters, use_projection=use_projection, drop_rate=drop_rate,
                         layers=layers, name=name)


def mbconv(x, filters: int, *, use_projection: bool, drop_rate: float, layers: LayerSettings, name: str, **extra):
    """Mobile SpineNet's MBConv block with squeeze-excitation (see :func:`spinenet.plan.block_plans.mbconv`)."""
    return planned_block("mbconv", x, filters, use_projection=use_projection, drop_rate=drop_rate,
                         layers=layers, name=name, **extra)
