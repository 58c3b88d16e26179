"""Decoder: compile any valid genome into a tf_keras backbone.

Layer names follow the genome, so a model summary maps onto it:
``stem_conv``, ``stem_block1_unit1_2_conv`` (the stem's first block, first
repeat, second conv), ``block7_in0_l3_reduce_conv`` (block 7, first parent, a
level-3 node, the 1x1 reduction of its resampling branch), ``block7_merge``,
``endpoint4_conv``.

Examples:
    >>> from spinenet import decode, SPINENET_49
    >>> model = decode(SPINENET_49, input_shape=(64, 64, 3),
    ...                filter_size_scale=0.25)  # doctest: +SKIP
    >>> sorted(model.output_shape)  # doctest: +SKIP
    ['3', '4', '5', '6', '7']
"""

from __future__ import annotations

from typing import Optional, Any, Sequence, Union

import tf_keras

from search_spaces.genome import Genome
from spinenet.blocks import LayerSettings, build_plan_layers
from spinenet.plan.builder import INPUT
from spinenet.plan.network import plan_network
from spinenet.scaling import DecodeError, Scaling, check_input_size
from spinenet.specs import SPINENET_49, SPINENET_MOBILE_49, scaling_for

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


def _input_channels(input_shape: Sequence) -> int:
    shape = tuple(input_shape)
    return int(shape[-1]) if len(shape) == 3 and shape[-1] else 3  # a bad shape is refused when building


def _serialized(module, value, what: str):
    """A Keras initializer/regularizer (name, config or object) as its serialized config."""
    if value is None:
        return None
    try:
        return module.serialize(module.get(value))
    except (ValueError, TypeError) as err:
        raise DecodeError(f"invalid {what} {value!r}: {err}") from None


def _build_backbone(inputs, genome: Genome, scaling: Scaling, layers: LayerSettings,
                    init_stochastic_depth_rate: float) -> dict:
    # Keras layers come from the layer plan, which the cost model counts too.
    try:
        plan = plan_network(genome, scaling, int(inputs.shape[-1]), init_stochastic_depth_rate)
    except ValueError as err:
        raise DecodeError(str(err)) from None
    tensors = build_plan_layers(plan.layers, {INPUT: inputs}, layers)
    for layer in plan.layers:
        if layer.kind == "custom" and tensors[layer.name].shape[-1] != layer.channels:
            raise DecodeError(
                f"block fn {layer.block_fn!r} returned {tensors[layer.name].shape[-1]} channels in "
                f"{layer.name.rsplit('_unit', 1)[0]}, expected filters * expansion = {layer.channels}"
            )
    return {str(level): tensors[name] for level, name in plan.endpoints.items()}


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
        scaling = Scaling(filter_size_scale, resample_alpha, block_repeats, endpoints_num_filters, genome.family)
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
        self.scaling = scaling  # what the backbone was decoded at (checkpoints are read against it)
        self.loaded_checkpoint = None  # decode(weights=) sets {checkpoint, prefix, variables}: where weights came from
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
           name: str = "spinenet", scaling: Optional[Scaling] = None,
           weights: Optional[str] = None) -> ScalePermutedBackbone:
    """Compile ``genome`` into a backbone whose output is ``{str(level): feature}`` for every endpoint.

    ``scaling`` (a :class:`~spinenet.scaling.Scaling`, e.g. ``ModelConfig.scaling``)
    replaces the four scaling keywords when given.
    ``kernel_regularizer`` may be a Keras regularizer or a float (an L2 weight).
    ``weights`` is a TF Model Garden checkpoint (a folder or a checkpoint prefix)
    whose backbone variables the model starts from; see
    :func:`~spinenet.model_garden_checkpoint.read_model_garden_checkpoint`.
    Raises :class:`~search_spaces.genome_rules.GenomeError` for an invalid genome,
    :class:`DecodeError` for settings or input sizes no backbone can have, and its
    subclass :class:`~spinenet.model_garden_checkpoint.CheckpointError` for
    ``weights`` that are no checkpoint or do not fit.
    """
    if scaling is not None:
        filter_size_scale, resample_alpha = scaling.filter_size_scale, scaling.resample_alpha
        block_repeats, endpoints_num_filters = scaling.block_repeats, scaling.endpoints_num_filters
    checkpoint = None
    if weights is not None:
        # The checkpoint is read and checked before the model is built, so a bad one fails fast.
        from spinenet.model_garden_checkpoint import read_model_garden_checkpoint

        genome = _as_genome(genome)
        checkpoint = read_model_garden_checkpoint(
            weights, genome, Scaling(filter_size_scale, resample_alpha, block_repeats, endpoints_num_filters,
                                     genome.family), input_channels=_input_channels(input_shape))
    model = ScalePermutedBackbone(
        genome, input_shape=input_shape, filter_size_scale=filter_size_scale, resample_alpha=resample_alpha,
        block_repeats=block_repeats, endpoints_num_filters=endpoints_num_filters, activation=activation,
        norm_momentum=norm_momentum, norm_epsilon=norm_epsilon, use_sync_bn=use_sync_bn,
        kernel_initializer=kernel_initializer, kernel_regularizer=kernel_regularizer,
        init_stochastic_depth_rate=init_stochastic_depth_rate, name=name,
    )
    if checkpoint is not None:
        checkpoint.assign_to(model)
        # Only where they came from: keeping the values would hold a second copy of every weight.
        model.loaded_checkpoint = {"checkpoint": checkpoint.path, "prefix": checkpoint.prefix,
                                   "variables": len(checkpoint.values)}
    return model


def build_spinenet(model_id: str, input_shape: Sequence = (640, 640, 3), **options) -> ScalePermutedBackbone:
    """SpineNet-``model_id`` (49S, 49, 96, 143 or 190): the seed genome at its published scaling.

    ``options`` go to :func:`decode`; ``weights=PATH`` starts from a Model Garden checkpoint of SpineNet-``model_id``.
    """
    settings = {**scaling_for(model_id), **options}
    settings.setdefault("name", f"spinenet{str(model_id).lower()}")
    return decode(SPINENET_49, input_shape=input_shape, **settings)


def build_spinenet_mobile(model_id: str, input_shape: Sequence = (384, 384, 3), **options) -> ScalePermutedBackbone:
    """Mobile SpineNet-``model_id`` (49, 49S or 49XS): ``SPINENET_MOBILE_49`` at its published scaling.

    The activation defaults to swish, as in the published Mobile SpineNet configs. ``options`` go to
    :func:`decode`; ``weights=PATH`` starts from a Model Garden checkpoint of Mobile SpineNet-``model_id``.
    """
    settings = {**scaling_for(f"mobile-{model_id}"), "activation": "swish", **options}
    settings.setdefault("name", f"spinenet_mobile{str(model_id).lower()}")
    return decode(SPINENET_MOBILE_49, input_shape=input_shape, **settings)


__all__ = ["DecodeError", "ScalePermutedBackbone", "build_spinenet", "build_spinenet_mobile", "decode"]
