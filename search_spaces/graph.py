"""The network a genome describes: the merge rule applied, and which nodes reach an endpoint."""

from __future__ import annotations

import dataclasses

from search_spaces.block_fns import BLOCK_FNS


@dataclasses.dataclass(frozen=True)
class ResolvedNode:
    """A node of the network a genome describes, after applying the merge rule.

    ``parents`` are resampled to this node's level and width; ``merged`` are
    earlier unused nodes of identical shape summed in as they are (only output
    blocks merge). ``live`` is False for blocks that reach no endpoint: the
    decoder does not build them and the cost model does not count them.
    """

    index: int
    level: int
    block_fn: str
    block: int | None  # 1-based block number, None for stem nodes
    is_output: bool
    parents: tuple[int, ...]
    merged: tuple[int, ...]
    live: bool


@dataclasses.dataclass(frozen=True)
class ResolvedGraph:
    """The nodes of a genome with merges resolved, and the node feeding each endpoint level."""

    nodes: tuple[ResolvedNode, ...]
    endpoints: dict  # level -> node index


def resolve_graph(genome) -> ResolvedGraph:
    """The :class:`ResolvedGraph` of a :class:`~search_spaces.genome.Genome` (see ``Genome.resolve``)."""
    expansion = {name: fn.expansion for name, fn in BLOCK_FNS.items()}
    n_init = genome.num_init_blocks
    levels = genome.block_levels
    fns = [genome.init_block_fn] * n_init + [b.block_fn for b in genome.blocks]
    # The reference starts every node's out-degree at zero, the stem chain included.
    out_degree = [0] * genome.num_nodes
    parents: list[tuple[int, ...]] = [((i - 1,) if i else ()) for i in range(n_init)]
    merged: list[tuple[int, ...]] = [() for _ in range(n_init)]
    endpoints: dict[int, int] = {}
    for number, block in enumerate(genome.blocks, start=1):
        node = n_init + number - 1
        for offset in block.input_offsets:
            out_degree[offset] += 1
        extra = []
        if block.is_output:
            for j in range(node):
                if (
                    out_degree[j] == 0
                    and levels[j] == block.level
                    and expansion[fns[j]] == expansion[block.block_fn]
                ):
                    extra.append(j)
                    out_degree[j] += 1
            endpoints[block.level] = node
        parents.append(tuple(block.input_offsets))
        merged.append(tuple(extra))

    live = [False] * genome.num_nodes
    stack = list(endpoints.values())
    while stack:
        node = stack.pop()
        if not live[node]:
            live[node] = True
            stack.extend(parents[node] + merged[node])
    nodes = tuple(
        ResolvedNode(
            index=i,
            level=levels[i],
            block_fn=fns[i],
            block=(i - n_init + 1) if i >= n_init else None,
            is_output=i >= n_init and genome.blocks[i - n_init].is_output,
            parents=parents[i],
            merged=merged[i],
            live=live[i],
        )
        for i in range(genome.num_nodes)
    )
    return ResolvedGraph(nodes=nodes, endpoints=dict(sorted(endpoints.items())))
