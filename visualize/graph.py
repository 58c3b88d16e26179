"""A genome as a ``networkx.DiGraph``: stem, blocks, endpoints and every connection.

Nodes: ``stem1``, ``stem2`` (kind ``stem``), ``block{i}`` (kind ``block``;
``level``, ``block_fn``, ``is_output``, ``order``, ``live``) and
``endpoint{level}`` (kind ``endpoint``). Edges carry a ``kind``: ``stem`` (the
stem chain), ``parent`` (a resampled input, with ``direction`` ``up``, ``down``
or ``same``), ``merge`` (an unused block summed into an output as it is) and
``endpoint``.

Examples:
    >>> from spinenet import SPINENET_49
    >>> g = genome_graph(SPINENET_49)
    >>> g.number_of_nodes(), g.number_of_edges()
    (22, 37)
"""

from __future__ import annotations

import os

import networkx as nx

from search_spaces.genome import Genome

FORMATS = ("graphml", "dot")


def _node_name(genome: Genome, index: int) -> str:
    if index < genome.num_init_blocks:
        return f"stem{index + 1}"
    return f"block{index - genome.num_init_blocks + 1}"


def genome_graph(genome: Genome) -> nx.DiGraph:
    """The network a genome describes, with implicit merges and liveness resolved."""
    resolved = genome.resolve()
    graph = nx.DiGraph(fingerprint=genome.fingerprint, min_level=genome.min_level, max_level=genome.max_level)
    for node in resolved.nodes:
        graph.add_node(_node_name(genome, node.index), kind="stem" if node.block is None else "block",
                       level=node.level, block_fn=node.block_fn, is_output=node.is_output,
                       order=node.index, live=node.live)
    for node in resolved.nodes:
        name = _node_name(genome, node.index)
        for parent in node.parents:
            if node.block is None:
                graph.add_edge(_node_name(genome, parent), name, kind="stem", direction="same")
                continue
            diff = node.level - resolved.nodes[parent].level
            graph.add_edge(_node_name(genome, parent), name, kind="parent",
                           direction="down" if diff > 0 else "up" if diff < 0 else "same")
        for merged in node.merged:
            graph.add_edge(_node_name(genome, merged), name, kind="merge", direction="same")
    for level, index in resolved.endpoints.items():
        endpoint = f"endpoint{level}"
        graph.add_node(endpoint, kind="endpoint", level=level, block_fn="", is_output=False,
                       order=genome.num_nodes, live=True)
        graph.add_edge(_node_name(genome, index), endpoint, kind="endpoint", direction="same")
    return graph


def write_graph(graph: nx.DiGraph, path: str, fmt: str | None = None) -> str:
    """Write GraphML or DOT (chosen by ``fmt`` or the file extension); returns the format used."""
    fmt = fmt or os.path.splitext(path)[1].lstrip(".").lower()
    if fmt == "gv":
        fmt = "dot"
    if fmt not in FORMATS:
        raise ValueError(f"unknown graph format {fmt!r}; choose one of {', '.join(FORMATS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path}: folder {folder} does not exist")
    if fmt == "graphml":
        nx.write_graphml(graph, path)
    else:
        nx.nx_pydot.write_dot(graph, path)
    return fmt
