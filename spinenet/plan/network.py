"""The network plan: every layer a genome decodes to (stem, blocks, resampling, endpoints), in build order.

Examples:
    >>> from spinenet import SPINENET_49
    >>> from spinenet.plan.network import plan_network
    >>> from spinenet.scaling import Scaling
    >>> plan = plan_network(SPINENET_49, Scaling())
    >>> plan.layers[0].name, plan.layers[0].kind, plan.layers[0].kernel
    ('stem_conv', 'conv', 7)
"""

from __future__ import annotations

from typing import Callable

from search_spaces.block_fns import get_block_fn
from search_spaces.families import get_family
from search_spaces.genome import Genome
from spinenet.plan.builder import INPUT, Plan, PlanBuilder

# SpineNet's stem: a 7x7 stride-2 convolution to 64 channels, then a max-pool.
SPINENET_STEM_FILTERS = 64
SPINENET_STEM_KERNEL = 7
MOBILE_STEM_KERNEL = 3


def block_group(p: PlanBuilder, x: str, block_fn: str, filters: int, repeats: int, drop_rate: float,
                name: str, strides: int = 1) -> str:
    """``repeats`` blocks of one function; only the first may project its shortcut or stride."""
    spec = get_block_fn(block_fn)
    out_channels = filters * spec.expansion
    for unit in range(1, repeats + 1):
        use_projection = unit == 1 and p.channels(x) != out_channels
        unit_name = f"{name}_unit{unit}"
        extra = {"strides": strides} if unit == 1 and strides != 1 else {}
        plan_fn = spec.resolve_plan()
        if plan_fn is None:
            if extra:
                raise ValueError(f"block fn {block_fn!r} has no plan and cannot stride (a {name} needs it)")
            x = p.custom(x, block_fn, filters, use_projection=use_projection, drop_rate=drop_rate, name=unit_name)
        else:
            x = plan_fn(x, filters, use_projection=use_projection, drop_rate=drop_rate, layers=p, name=unit_name,
                        **dict(spec.options), **extra)
        if p.channels(x) != out_channels:
            raise ValueError(f"block fn {block_fn!r} gave {p.channels(x)} channels in {name}, "
                             f"expected filters * expansion = {out_channels}")
    return x


def _spinenet_resample(p, x, parent_level, parent_fn, target_level, target_channels, scaling, name):
    width = scaling.resample_width(p.channels(x), parent_fn)
    x = p.conv_bn_act(x, width, 1, name=f"{name}_reduce")
    steps = target_level - parent_level
    if steps > 0:
        x = p.conv_bn_act(x, width, 3, strides=2, name=f"{name}_down")
        for pool in range(1, steps):
            x = p.max_pool(x, name=f"{name}_pool{pool}")
    elif steps < 0:
        x = p.upsample(x, 2 ** -steps, name=f"{name}_up")
    return p.conv_bn_act(x, target_channels, 1, name=f"{name}_expand", activate=False)


def _mobile_resample(p, x, parent_level, parent_fn, target_level, target_channels, scaling, name):
    steps = target_level - parent_level
    for step in range(1, steps + 1):
        x = p.norm(p.depthwise_conv(x, 3, strides=2, name=f"{name}_down{step}_conv"), name=f"{name}_down{step}_bn")
        x = p.act(x, name=f"{name}_down{step}_act")
    if steps < 0:
        x = p.upsample(x, 2 ** -steps, name=f"{name}_up")
    return p.conv_bn_act(x, target_channels, 1, name=f"{name}_expand", activate=False)


_RESAMPLERS: dict[str, Callable] = {"spinenet": _spinenet_resample, "mobile": _mobile_resample}


def _stem(p: PlanBuilder, genome: Genome, scaling) -> tuple[str, int]:
    """The stem's layers before its blocks; returns the tensor and its level."""
    family = get_family(genome.family)
    if family.stem == "spinenet":
        x = p.conv_bn_act(INPUT, SPINENET_STEM_FILTERS, SPINENET_STEM_KERNEL, strides=2, name="stem")
        return p.max_pool(x, name="stem_pool"), 2
    if family.stem == "mobile":
        x = p.conv_bn_act(INPUT, scaling.filters(0), MOBILE_STEM_KERNEL, strides=2, name="stem")
        return x, 1
    raise ValueError(f"family {family.name!r}: unknown stem {family.stem!r}")


def plan_network(genome: Genome, scaling, input_channels: int = 3, init_stochastic_depth_rate: float = 0.0) -> Plan:
    """Every layer ``decode(genome, ...)`` builds at ``scaling`` (a :class:`spinenet.scaling.Scaling`)."""
    family = get_family(genome.family)
    resample = _RESAMPLERS[family.resampling]
    graph = genome.resolve()
    p = PlanBuilder(input_channels)
    x, level = _stem(p, genome, scaling)
    features: dict[int, str] = {}
    num_blocks = len(genome.blocks)
    for node in graph.nodes:
        if not node.live:
            continue
        filters = scaling.filters(node.level)
        if node.block is None:
            source = features.get(node.index - 1, x)
            strides = 2 ** (node.level - p.level(source))
            features[node.index] = block_group(p, source, node.block_fn, filters, scaling.block_repeats, 0.0,
                                               name=f"stem_block{node.index + 1}", strides=strides)
            continue
        name = f"block{node.block}"
        channels = scaling.channels(node.level, node.block_fn)
        inputs = [
            resample(p, features[q], graph.nodes[q].level, graph.nodes[q].block_fn, node.level, channels, scaling,
                     f"{name}_in{j}_l{graph.nodes[q].level}")
            for j, q in enumerate(node.parents)
        ]
        inputs += [features[m] for m in node.merged]
        merged = p.act(p.add(inputs, name=f"{name}_merge"), name=f"{name}_merge_act")
        # Drop rates grow linearly with depth, as in the stochastic-depth paper.
        drop_rate = init_stochastic_depth_rate * node.block / num_blocks
        features[node.index] = block_group(p, merged, node.block_fn, filters, scaling.block_repeats, drop_rate,
                                           name=name)
    endpoints = {}
    for level, index in graph.endpoints.items():
        endpoints[level] = p.conv_bn_act(features[index], scaling.endpoints_num_filters, 1, name=f"endpoint{level}")
    return Plan(tuple(p.layers), endpoints, input_channels)
