"""Genome fingerprints: 16 hex digits, equal for genomes that describe the same network."""

from __future__ import annotations

import hashlib
import json

from search_spaces.families import DEFAULT_FAMILY


def genome_fingerprint(genome) -> str:
    """The fingerprint of a :class:`~search_spaces.genome.Genome` (see ``Genome.fingerprint``)."""
    graph = genome.resolve()
    # Merkle hash: a node's hash covers its own settings and, as a multiset,
    # the hashes of what feeds it, so structurally equal subnetworks hash equal.
    merkle: dict[int, str] = {}
    for node in graph.nodes:
        if not node.live:
            continue
        if node.block is None:
            key = ["stem", node.index, node.block_fn]
        else:
            key = [
                node.level,
                node.block_fn,
                sorted(merkle[p] for p in node.parents),
                sorted(merkle[m] for m in node.merged),
            ]
        merkle[node.index] = hashlib.sha256(json.dumps(key).encode()).hexdigest()
    # Canonical numbering by hash, so that sharing (one node feeding two
    # consumers) is part of the fingerprint and not only the tree shape.
    order = sorted(merkle, key=lambda i: (merkle[i], i))
    rank = {node: position for position, node in enumerate(order)}
    canonical = [
        [
            graph.nodes[i].level,
            graph.nodes[i].block_fn,
            sorted(rank[p] for p in graph.nodes[i].parents),
            sorted(rank[m] for m in graph.nodes[i].merged),
        ]
        for i in order
    ]
    document = {
        "levels": [genome.min_level, genome.max_level],
        "nodes": canonical,
        "endpoints": {str(level): rank[node] for level, node in graph.endpoints.items()},
    }
    if genome.family != DEFAULT_FAMILY:  # absent for SpineNet, so stored fingerprints stay valid
        document["family"] = genome.family
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
