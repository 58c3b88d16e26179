"""Decoder: compile any valid genome into a tf_keras backbone.

Layer names follow the genome, so a model summary maps onto it:
``stem_conv``, ``stem_block1_unit1_2_conv`` (the stem's first block, first
repeat, second conv), ``block7_in0_l3_reduce_conv`` (block 7, first parent, a
level-3 node, the 1x1 reduction of its resampling branch), ``block7_merge``,
``endpoint4_conv``.

Example:
    >>> from spinenet import decode, SPINENET_49
    >>> model = decode(SPINENET_49, input_shape=(64, 64, 3),
    ...                filter_size_scale=0.25)  # doctest: +SKIP
    >>> sorted(model.output_shape)  # doctest: +SKIP
    ['3', '4', '5', '6', '7']
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import tf_keras

from search_spaces.block_fns import BLOCK_FNS
from search_spaces.genome import Genome, ResolvedNode
from spinenet.blocks import LayerSettings, NearestUpsampling
from spinenet.scaling import STEM_FILTERS, DecodeError, Scaling, check_input_size
from spinenet.specs import SPINENET_49, scaling_for

GenomeLike = Union[Genome, dict, Sequence[Sequence]]


def _as_genome(genome: GenomeLike) -> Genome:
    if isinstance(genome, Genome):
        return genome
    if isinstance(genome, dict):
        return Genome.from_dict(genome)
    return Genome.from_block_specs(genome)


def _check_activation(activation: str) -> None:
    try:
        tf_keras.activations.get(activation)
    except (ValueError, TypeError):
        raise DecodeError(f"unknown activation {activation!r} (try 'relu' or 'swish')") from None


def _serialized(module, value, what: str):
    """A Keras initializer/regularizer (name, config or object) as its serialized config."""
    if value is None:
        return None
    try:
        return module.serialize(module.get(value))
    except (ValueError, TypeError) as err:
        raise DecodeError(f"invalid {what} {value!r}: {err}") from None


def _resample(x, parent: ResolvedNode, target_level: int, target_channels: int, scaling: Scaling,
              layers: LayerSettings, name: str):
    """Bring a parent to the target's level and width: reduce, move across levels, expand."""
    width = scaling.resample_width(x.shape[-1], parent.block_fn)
    x = layers.conv_bn_act(x, width, 1, name=f"{name}_reduce")
    steps = target_level - parent.level
    if steps > 0:
        x = layers.conv_bn_act(x, width, 3, strides=2, name=f"{name}_down")
        for pool in range(1, steps):
            x = tf_keras.layers.MaxPool2D(3, strides=2, padding="same", name=f"{name}_pool{pool}")(x)
    elif steps < 0:
        x = NearestUpsampling(2 ** -steps, name=f"{name}_up")(x)
    return layers.conv_bn_act(x, target_channels, 1, name=f"{name}_expand", activate=False)


def _block_group(x, block_fn: str, filters: int, repeats: int, drop_rate: float,
                 layers: LayerSettings, name: str):
    """``repeats`` blocks of one function; only the first may project its shortcut."""
    build = BLOCK_FNS[block_fn].resolve_build()
    out_channels = filters * BLOCK_FNS[block_fn].expansion
    for unit in range(1, repeats + 1):
        use_projection = unit == 1 and x.shape[-1] != out_channels
        x = build(x, filters, use_projection=use_projection, drop_rate=drop_rate, layers=layers,
                  name=f"{name}_unit{unit}")
        if x.shape[-1] != out_channels:
            raise DecodeError(
                f"block fn {block_fn!r} returned {x.shape[-1]} channels in {name}, "
                f"expected filters * expansion = {out_channels}"
            )
    return x


def _build_backbone(inputs, genome: Genome, scaling: Scaling, layers: LayerSettings,
                    init_stochastic_depth_rate: float) -> dict:
    graph = genome.resolve()
    x = layers.conv_bn_act(inputs, STEM_FILTERS, 7, strides=2, name="stem")
    x = tf_keras.layers.MaxPool2D(3, strides=2, padding="same", name="stem_pool")(x)
    features: dict[int, Any] = {}
    num_blocks = len(genome.blocks)
    for node in graph.nodes:
        if not node.live:
            continue
        filters = scaling.filters(node.level)
        if node.block is None:
            x = _block_group(features.get(node.index - 1, x), node.block_fn, filters,
                             scaling.block_repeats, 0.0, layers, name=f"stem_block{node.index + 1}")
            features[node.index] = x
            continue
        name = f"block{node.block}"
        channels = scaling.channels(node.level, node.block_fn)
        inputs_to_sum = [
            _resample(features[p], graph.nodes[p], node.level, channels, scaling, layers,
                      name=f"{name}_in{j}_l{graph.nodes[p].level}")
            for j, p in enumerate(node.parents)
        ]
        inputs_to_sum += [features[m] for m in node.merged]
        x = tf_keras.layers.Add(name=f"{name}_merge")(inputs_to_sum)
        x = layers.act(x, name=f"{name}_merge_act")
        # Drop rates grow linearly with depth, as in the stochastic-depth paper.
        drop_rate = init_stochastic_depth_rate * node.block / num_blocks
        features[node.index] = _block_group(x, node.block_fn, filters, scaling.block_repeats,
                                            drop_rate, layers, name=name)
    endpoints = {}
    for level, index in graph.endpoints.items():
        endpoints[str(level)] = layers.conv_bn_act(
            features[index], scaling.endpoints_num_filters, 1, name=f"endpoint{level}"
        )
    return endpoints


@tf_keras.saving.register_keras_serializable(package="spinenas")
class ScalePermutedBackbone(tf_keras.Model):
    """A functional Keras model decoded from a genome; outputs a dict ``{'3': ..., '7': ...}``.

    ``get_config()`` holds the genome and every decode setting, so a saved
    ``.keras`` file reloads into the same architecture.
    """

    def __init__(self, genome: GenomeLike, input_shape: Sequence = (None, None, 3),
                 filter_size_scale: float = 1.0, resample_alpha: float = 0.5, block_repeats: int = 1,
                 endpoints_num_filters: int = 256, activation: str = "relu", norm_momentum: float = 0.99,
                 norm_epsilon: float = 1e-3, use_sync_bn: bool = False,
                 kernel_initializer: Any = "VarianceScaling", kernel_regularizer: Any = None,
                 init_stochastic_depth_rate: float = 0.0, name: str = "spinenet", **kwargs):
        genome = _as_genome(genome)
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise DecodeError(f"input_shape must be (height, width, channels), got {input_shape}")
        check_input_size(genome, input_shape[:2])
        scaling = Scaling(filter_size_scale, resample_alpha, block_repeats, endpoints_num_filters)
        _check_activation(activation)
        if not 0.0 <= init_stochastic_depth_rate < 1.0:
            raise DecodeError(f"init_stochastic_depth_rate must be in [0, 1), got {init_stochastic_depth_rate}")
        initializer = _serialized(tf_keras.initializers, kernel_initializer, "kernel_initializer")
        if isinstance(kernel_regularizer, (int, float)) and not isinstance(kernel_regularizer, bool):
            kernel_regularizer = tf_keras.regularizers.L2(float(kernel_regularizer))
        regularizer = _serialized(tf_keras.regularizers, kernel_regularizer, "kernel_regularizer")
        layers = LayerSettings(activation, norm_momentum, norm_epsilon, use_sync_bn, initializer, regularizer)
        inputs = tf_keras.Input(shape=input_shape, name="image")
        outputs = _build_backbone(inputs, genome, scaling, layers, init_stochastic_depth_rate)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.genome = genome
        self._decode_config = {
            "input_shape": list(input_shape),
            "filter_size_scale": filter_size_scale,
            "resample_alpha": resample_alpha,
            "block_repeats": block_repeats,
            "endpoints_num_filters": endpoints_num_filters,
            "activation": activation,
            "norm_momentum": norm_momentum,
            "norm_epsilon": norm_epsilon,
            "use_sync_bn": use_sync_bn,
            "kernel_initializer": initializer,
            "kernel_regularizer": regularizer,
            "init_stochastic_depth_rate": init_stochastic_depth_rate,
        }

    def get_config(self):
        return {"genome": self.genome.to_dict(), **self._decode_config, "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def decode(genome: GenomeLike, *, input_shape: Sequence = (None, None, 3), filter_size_scale: float = 1.0,
           resample_alpha: float = 0.5, block_repeats: int = 1, endpoints_num_filters: int = 256,
           activation: str = "relu", norm_momentum: float = 0.99, norm_epsilon: float = 1e-3,
           use_sync_bn: bool = False, kernel_initializer: Any = "VarianceScaling",
           kernel_regularizer: Any = None, init_stochastic_depth_rate: float = 0.0,
           name: str = "spinenet") -> ScalePermutedBackbone:
    """Compile ``genome`` into a backbone whose output is ``{str(level): feature}`` for every endpoint.

    ``kernel_regularizer`` may be a Keras regularizer or a float (an L2 weight).
    Raises :class:`~search_spaces.genome.GenomeError` for an invalid genome and
    :class:`DecodeError` for settings or input sizes no backbone can have.
    """
    return ScalePermutedBackbone(
        genome, input_shape=input_shape, filter_size_scale=filter_size_scale, resample_alpha=resample_alpha,
        block_repeats=block_repeats, endpoints_num_filters=endpoints_num_filters, activation=activation,
        norm_momentum=norm_momentum, norm_epsilon=norm_epsilon, use_sync_bn=use_sync_bn,
        kernel_initializer=kernel_initializer, kernel_regularizer=kernel_regularizer,
        init_stochastic_depth_rate=init_stochastic_depth_rate, name=name,
    )


def build_spinenet(model_id: str, input_shape: Sequence = (640, 640, 3), **options) -> ScalePermutedBackbone:
    """SpineNet-``model_id`` (49S, 49, 96, 143 or 190): the seed genome at its published scaling."""
    settings = {**scaling_for(model_id), **options}
    settings.setdefault("name", f"spinenet{str(model_id).lower()}")
    return decode(SPINENET_49, input_shape=input_shape, **settings)


__all__ = ["DecodeError", "ScalePermutedBackbone", "build_spinenet", "decode"]
