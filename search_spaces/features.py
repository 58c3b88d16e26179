"""Interpretable features of a genome: what a reader (and the predictor) can reason about.

Counted over the live network (blocks an endpoint reads), stem excluded:
blocks per level, the share of residual blocks, depth (the longest chain of
blocks from the stem to an endpoint), cross-scale edges (a block reading a
node at another level) split into up-sampling (from a coarser level) and
down-sampling (from a finer level) edges; plus, when given, params and
multiply-adds from the cost model. Pure Python: no TensorFlow.

Examples:
    >>> from spinenet import SPINENET_49
    >>> f = genome_features(SPINENET_49)
    >>> f["blocks_l3"], f["blocks_l5"], f["cross_scale_edges"]
    (2, 4, 21)
"""

from __future__ import annotations

from search_spaces.families import get_family
from search_spaces.genome import Genome


def feature_names(genome_or_family="spinenet", costs: bool = True) -> list[str]:
    """The feature names, in a fixed order, for a genome's family (or a family name)."""
    family = get_family(getattr(genome_or_family, "family", genome_or_family))
    levels = range(family.min_block_level, family.max_block_level + 1)
    names = [f"blocks_l{level}" for level in levels]
    names += ["residual_share", "depth", "cross_scale_edges", "up_resamplings", "down_resamplings"]
    return names + (["params", "multiply_adds"] if costs else [])


def genome_features(genome: Genome, params: float | None = None, multiply_adds: float | None = None) -> dict:
    """Feature name -> value for ``genome`` (cost features only when ``params``/``multiply_adds`` are given)."""
    graph = genome.resolve()
    live = [n for n in graph.nodes if n.live and n.block is not None]
    levels = {n.index: n.level for n in graph.nodes}
    out = {name: 0 for name in feature_names(genome, costs=False)}
    for node in live:
        out[f"blocks_l{node.level}"] = out.get(f"blocks_l{node.level}", 0) + 1
    out["residual_share"] = round(sum(1 for n in live if n.block_fn == "residual") / max(len(live), 1), 4)
    depth = {}
    for node in graph.nodes:  # nodes come in build order, so parents are done first
        inputs = node.parents + node.merged
        depth[node.index] = (max(depth[p] for p in inputs) if inputs else 0) + (node.block is not None)
    out["depth"] = max(depth[i] for i in graph.endpoints.values())
    for node in live:
        for parent in node.parents + node.merged:
            if levels[parent] != node.level:
                out["cross_scale_edges"] += 1
                out["up_resamplings" if levels[parent] > node.level else "down_resamplings"] += 1
    if params is not None:
        out["params"] = float(params)
    if multiply_adds is not None:
        out["multiply_adds"] = float(multiply_adds)
    return out
