"""Where each weight of a decoded backbone lives in a TF Model Garden checkpoint (pure Python, no TensorFlow).

The Model Garden's ``SpineNet`` and ``SpineNetMobile`` are functional Keras
models. A TF2 object-based checkpoint names their variables by position:
``layer_with_weights-K/kernel`` is the K-th layer that has weights in the
model's ``layers`` list, and a block's own layers sit under attribute names
(``layer_with_weights-K/_conv1/kernel``). The checkpoint stores neither layer
names nor the architecture, so reading one needs the order Keras gives those
layers. Keras sorts a functional model's layers by depth (the longest path to
an output, deepest first) and, at equal depth, by the order a depth-first walk
from the outputs first meets them. :func:`model_garden_layout` rebuilds the
Model Garden's layer graph from the decoder's layer plan (one node per Keras
layer or TensorFlow op the Model Garden creates, as observed in
``tf-models-official`` 2.20) and applies that sort, so it yields each
checkpoint path next to the decoded layer and weight that holds the same value.

Examples:
    >>> from spinenet import SPINENET_49
    >>> from spinenet.scaling import Scaling
    >>> layout = model_garden_layout(SPINENET_49, Scaling())
    >>> layout[0]
    LayoutVariable(path='layer_with_weights-0/kernel', layer='stem_conv', weight='kernel', shape=(7, 7, 3, 64))
    >>> layout[5].path, layout[5].layer
    ('layer_with_weights-2/_shortcut/kernel', 'stem_block1_unit1_shortcut_conv')
"""

from __future__ import annotations

import dataclasses
import re

from search_spaces.genome import Genome
from spinenet.model_garden_backbone import (ModelGardenError, check_buildable, model_garden_backbone,
                                            model_garden_block_fn)
from spinenet.plan.builder import INPUT, PlanLayer
from spinenet.plan.network import plan_network
from spinenet.scaling import Scaling


@dataclasses.dataclass(frozen=True)
class LayoutVariable:
    """One checkpoint variable: its path under the backbone, the decoded layer and weight, and the shape."""

    path: str
    layer: str
    weight: str
    shape: tuple[int, ...]


# A block unit's layers in the plan (see spinenet.plan.block_plans) and the attribute of the
# Model Garden block layer (official/vision/modeling/layers/nn_blocks.py) that holds the same weights.
_BLOCK_ATTRIBUTES = {
    "bottleneck": {"shortcut_conv": "_shortcut", "shortcut_bn": "_norm0", "1_conv": "_conv1", "1_bn": "_norm1",
                   "2_conv": "_conv2", "2_bn": "_norm2", "3_conv": "_conv3", "3_bn": "_norm3"},
    "residual": {"shortcut_conv": "_shortcut", "shortcut_bn": "_norm0", "1_conv": "_conv1", "1_bn": "_norm1",
                 "2_conv": "_conv2", "2_bn": "_norm2"},
    "mbconv": {"expand_conv": "_conv0", "expand_bn": "_norm0", "dw_conv": "_conv1", "dw_bn": "_norm1",
               "se_reduce": "_squeeze_excitation/_se_reduce", "se_expand": "_squeeze_excitation/_se_expand",
               "project_conv": "_conv2", "project_bn": "_norm2"},
}
# nearest_upsampling (official/vision/ops/spatial_transform_ops.py) is five ops deep on its longest
# path: shape, slice, reshape, tile, reshape. Only that length matters to the layer order.
_UPSAMPLE_DEPTH = 5
_UNIT = re.compile(r"^(?P<group>stem_block\d+|block\d+)_unit\d+_(?P<part>.+)$")
_WEIGHTED = ("conv", "dwconv", "bn")


def _weights(layer: PlanLayer) -> list[tuple[str, tuple[int, ...]]]:
    """The Keras weights a planned layer has, by name, with their shapes."""
    if layer.kind == "conv":
        weights = [("kernel", (layer.kernel, layer.kernel, layer.in_channels, layer.channels))]
        return weights + ([("bias", (layer.channels,))] if layer.use_bias else [])
    if layer.kind == "dwconv":
        return [("depthwise_kernel", (layer.kernel, layer.kernel, layer.in_channels, 1))]
    return [(name, (layer.channels,)) for name in ("gamma", "beta", "moving_mean", "moving_variance")]


class _Graph:
    """The Model Garden backbone's layer graph: node inputs in call order, and each weighted node's variables."""

    def __init__(self):
        self.inputs: list[list[int]] = []
        self.variables: dict[int, list[tuple[str, PlanLayer]]] = {}

    def node(self, inputs, variables=None) -> int:
        self.inputs.append(list(inputs))
        index = len(self.inputs) - 1
        if variables is not None:
            self.variables[index] = variables
        return index

    def chain(self, source: int, length: int) -> int:
        for _ in range(length):
            source = self.node([source])
        return source

    def keras_order(self, outputs: list[int]) -> list[int]:
        """The weighted nodes in the order tf_keras's functional model lists its layers."""
        # tf_keras.src.engine.functional._map_graph_network: a depth-first walk from the outputs
        # numbers the layers as it first meets them; depth is the longest path to an output.
        first_seen: dict[int, int] = {}
        finished: list[int] = []
        done: set[int] = set()
        for output in outputs:
            stack = [(output, 0)]
            while stack:
                node, next_input = stack.pop()
                if next_input == 0:
                    if node in done:
                        continue
                    first_seen.setdefault(node, len(first_seen))
                if next_input < len(self.inputs[node]):
                    stack.append((node, next_input + 1))
                    parent = self.inputs[node][next_input]
                    if parent not in done:
                        stack.append((parent, 0))
                else:
                    done.add(node)
                    finished.append(node)
        depth: dict[int, int] = {}
        for node in reversed(finished):
            own = depth.setdefault(node, 0)
            for parent in self.inputs[node]:
                depth[parent] = max(depth.get(parent, 0), own + 1)
        ordered = sorted(finished, key=lambda n: (-depth[n], first_seen[n]))
        return [n for n in ordered if n in self.variables]


def _group_block_fns(genome: Genome) -> dict[str, str]:
    """The Model Garden block function of every block group name of the plan (``stem_block1``, ``block7``)."""
    backbone = model_garden_backbone(genome)
    names = {}
    for node in genome.resolve().nodes:
        name = f"stem_block{node.index + 1}" if node.block is None else f"block{node.block}"
        names[name] = model_garden_block_fn(node.block_fn, backbone)
    return names


def model_garden_layout(genome: Genome, scaling: Scaling, input_channels: int = 3) -> tuple[LayoutVariable, ...]:
    """Every variable of the Model Garden backbone of ``genome`` at ``scaling``, in checkpoint order.

    Paths are relative to the backbone object (``layer_with_weights-K/...``);
    each names the decoded layer and weight (``decode(genome, ...)``'s layer
    names) that holds the same value. Raises :class:`ModelGardenError` for a
    genome the Model Garden cannot build (:func:`check_buildable`).
    """
    check_buildable(genome, scaling.block_repeats)
    mobile = genome.family == "mobile"
    plan = plan_network(genome, scaling, input_channels)
    block_fns = _group_block_fns(genome)
    last_of_group = {}
    for index, layer in enumerate(plan.layers):
        unit = _UNIT.match(layer.name)
        if unit:
            last_of_group[unit.group("group")] = index
    graph = _Graph()
    node_of = {INPUT: graph.node([])}
    units: dict[str, int] = {}
    for index, layer in enumerate(plan.layers):
        unit = _UNIT.match(layer.name)
        if unit:
            # A whole block (one repeat of a group) is one Model Garden layer.
            key = layer.name[:unit.start("part")]
            if key not in units:
                units[key] = graph.node([node_of[layer.inputs[0]]], [])
            node_of[layer.name] = units[key]
            if layer.kind in _WEIGHTED:
                attributes = _BLOCK_ATTRIBUTES[block_fns[unit.group("group")]]
                if unit.group("part") not in attributes:
                    raise ModelGardenError(f"layer {layer.name} has no place in the Model Garden's block")
                graph.variables[units[key]].append((attributes[unit.group("part")], layer))
            if index == last_of_group[unit.group("group")]:
                # SpineNet ends a group with tf.identity, SpineNetMobile with a linear Activation.
                node_of[layer.name] = graph.node([units[key]])
            continue
        inputs = [node_of[name] for name in layer.inputs]
        if layer.kind in _WEIGHTED:
            node_of[layer.name] = graph.node(inputs, [("", layer)])
        elif layer.kind in ("act", "maxpool"):
            node_of[layer.name] = graph.node(inputs)
        elif layer.kind == "upsample":
            node_of[layer.name] = graph.chain(inputs[0], _UPSAMPLE_DEPTH)
        elif layer.kind == "add" and not mobile:
            node_of[layer.name] = graph.node(inputs)  # tf.add_n(parents)
        elif layer.kind == "add":
            total = inputs[0]  # SpineNetMobile sums parents with a chain of two-input Add layers
            for addend in inputs[1:]:
                total = graph.node([total, addend])
            node_of[layer.name] = total
        else:
            raise ModelGardenError(f"layer {layer.name} ({layer.kind}) has no counterpart in the Model Garden's "
                                   "backbone")
    # The model's outputs are a dict {'3': ..., '7': ...}, which Keras flattens in sorted key order.
    outputs = [node_of[plan.endpoints[level]] for level in sorted(plan.endpoints, key=str)]
    layout = []
    for position, node in enumerate(graph.keras_order(outputs)):
        for attribute, layer in graph.variables[node]:
            prefix = f"layer_with_weights-{position}" + (f"/{attribute}" if attribute else "")
            for weight, shape in _weights(layer):
                layout.append(LayoutVariable(f"{prefix}/{weight}", layer.name, weight, shape))
    return tuple(layout)


__all__ = ["LayoutVariable", "model_garden_layout"]
