"""Permutation diagrams: blocks left to right in build order, height = level.

Connections are curves coloured by direction (down-sampling, up-sampling,
same level); implicit merges of unused blocks into outputs are dashed; output
blocks carry their endpoint label (P3..P7); blocks no endpoint reads are
hollow. Figures are built without pyplot, so drawing works headless.

Examples:
    >>> from spinenet import SPINENET_49
    >>> from visualize.draw import draw_genome
    >>> fig = draw_genome(SPINENET_49, title="SpineNet-49")  # doctest: +SKIP
    >>> fig.savefig("spinenet49.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch

from search_spaces.genome import Genome
from visualize.graph import genome_graph

IMAGE_FORMATS = ("png", "svg", "pdf")
BLOCK_COLOURS = {"bottleneck": "#4C72B0", "residual": "#DD8452", "mbconv": "#55A868"}
EXTRA_COLOURS = ("#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD")
EDGE_COLOURS = {"down": "#C44E52", "up": "#55A868", "same": "#7F7F7F", "merge": "#8172B3"}
STEM_COLOUR = "#BBBBBB"


def _colour(block_fn: str, seen: list) -> str:
    if block_fn in BLOCK_COLOURS:
        return BLOCK_COLOURS[block_fn]
    if block_fn not in seen:
        seen.append(block_fn)
    return EXTRA_COLOURS[seen.index(block_fn) % len(EXTRA_COLOURS)]


def _cost_line(genome: Genome, scaling, input_size: int) -> str:
    from spinenet.cost import network_cost
    from spinenet.specs import default_scaling

    from spinenet.scaling import Scaling

    settings = scaling if scaling is not None else default_scaling(genome)
    try:
        cost = network_cost(genome, input_size, **({"scaling": settings} if isinstance(settings, Scaling) else settings))
    except ValueError:
        return ""
    return f"{cost.params / 1e6:.2f} M params, {cost.multiply_adds / 1e9:.2f} G multiply-adds at {input_size}px"


def draw_genome(genome: Genome, path: Optional[str] = None, ax=None, *, title: Optional[str] = None,
                scaling=None, input_size: int = 640, legend: bool = True):
    """Draw ``genome``'s permutation diagram on ``ax`` (or a new figure); save it if ``path`` is given.

    The title shows params and multiply-adds from the cost model at ``scaling`` (a
    :class:`~spinenet.scaling.Scaling` or its keywords)
    (default: the 49 scaling of the genome's family) and ``input_size``. Returns the figure.
    """
    if path is not None:
        _check_image_path(path)
    graph = genome_graph(genome)
    blocks = [n for n, d in graph.nodes(data=True) if d["kind"] != "endpoint"]
    if ax is None:
        figure = Figure(figsize=(max(7.0, 0.42 * len(blocks) + 2.5), 4.8), layout="constrained")
        ax = figure.add_subplot()
    figure = ax.figure
    position = {n: (graph.nodes[n]["order"], graph.nodes[n]["level"]) for n in blocks}
    levels = sorted({graph.nodes[n]["level"] for n in blocks})

    for source, target, data in graph.edges(data=True):
        if data["kind"] == "endpoint":
            continue
        (x0, y0), (x1, y1) = position[source], position[target]
        merge = data["kind"] == "merge"
        colour = EDGE_COLOURS["merge" if merge else data["direction"]]
        live = graph.nodes[target]["live"]
        ax.add_patch(FancyArrowPatch(
            (x0, y0), (x1, y1), connectionstyle=f"arc3,rad={-0.25 if y1 >= y0 else 0.25}",
            arrowstyle="-|>", mutation_scale=9, shrinkA=7, shrinkB=7, linewidth=1.2,
            linestyle="--" if merge else "-", color=colour, alpha=0.75 if live else 0.25, zorder=1))

    seen: list = []
    for name in blocks:
        data = graph.nodes[name]
        x, y = position[name]
        if data["kind"] == "stem":
            ax.scatter([x], [y], s=170, marker="s", color=STEM_COLOUR, edgecolor="#555555", zorder=3)
            continue
        colour = _colour(data["block_fn"], seen)
        ax.scatter([x], [y], s=260 if data["is_output"] else 170, zorder=3,
                   color=colour if data["live"] else "white", edgecolor="black" if data["is_output"] else colour,
                   linewidth=2.2 if data["is_output"] else 1.2, linestyle="-" if data["live"] else "--")
        if data["is_output"]:
            ax.annotate(f"P{data['level']}", (x, y), xytext=(0, 11), textcoords="offset points",
                        ha="center", fontsize=8, fontweight="bold")

    ax.set_xlim(-0.7, max(x for x, _ in position.values()) + 0.7)
    ax.set_ylim(levels[0] - 0.7, levels[-1] + 0.9)
    ax.set_yticks(levels, [f"L{lvl}" for lvl in levels])
    ax.set_xticks([position[n][0] for n in blocks],
                  ["s" if graph.nodes[n]["kind"] == "stem" else n.removeprefix("block") for n in blocks], fontsize=7)
    ax.set_xlabel("build order (s = stem)")
    ax.grid(axis="y", color="#EEEEEE", zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    cost = _cost_line(genome, scaling, input_size)
    heading = title or f"genome {genome.fingerprint}"
    ax.set_title(f"{heading}\n{cost}" if cost else heading, fontsize=10)
    if legend:
        ax.legend(handles=_legend_handles(graph, seen), loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  fontsize=7, frameon=False)
    if path is not None:
        figure.savefig(path, dpi=150)
    return figure


def _legend_handles(graph, extra_fns: list) -> list:
    fns = sorted({d["block_fn"] for _, d in graph.nodes(data=True) if d["kind"] == "block"})
    handles = [Line2D([], [], marker="o", linestyle="", color=_colour(fn, list(extra_fns)), label=fn) for fn in fns]
    handles += [
        Line2D([], [], marker="s", linestyle="", color=STEM_COLOUR, label="stem"),
        Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black", markeredgewidth=2,
               label="output (P level)"),
        Line2D([], [], color=EDGE_COLOURS["down"], label="to a lower resolution"),
        Line2D([], [], color=EDGE_COLOURS["up"], label="to a higher resolution"),
        Line2D([], [], color=EDGE_COLOURS["same"], label="same level"),
    ]
    if any(d["kind"] == "merge" for *_, d in graph.edges(data=True)):
        handles.append(Line2D([], [], color=EDGE_COLOURS["merge"], linestyle="--", label="merged unused block"))
    if not all(d["live"] for _, d in graph.nodes(data=True)):
        handles.append(Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="#777777",
                              label="unused (not built)"))
    return handles


def draw_genomes(genomes: Sequence[Genome], titles: Optional[Sequence[str]] = None, path: Optional[str] = None,
                 **options):
    """Several diagrams side by side (widths follow block counts); save if ``path`` is given."""
    if not genomes:
        raise ValueError("draw_genomes needs at least one genome")
    if titles is not None and len(titles) != len(genomes):
        raise ValueError(f"got {len(titles)} titles for {len(genomes)} genomes")
    if path is not None:
        _check_image_path(path)
    widths = [g.num_nodes for g in genomes]
    figure = Figure(figsize=(max(8.0, 0.42 * sum(widths) + 2.5 * len(genomes)), 4.8), layout="constrained")
    axes = figure.subplots(1, len(genomes), gridspec_kw={"width_ratios": widths}, squeeze=False)[0]
    for i, (genome, ax) in enumerate(zip(genomes, axes)):
        draw_genome(genome, ax=ax, title=titles[i] if titles else None, legend=i == len(genomes) - 1, **options)
    if path is not None:
        figure.savefig(path, dpi=150)
    return figure


def _check_image_path(path: str) -> None:
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    if extension not in IMAGE_FORMATS:
        raise ValueError(f"cannot draw to {path}: unknown image format {extension or '(none)'!r}; "
                         f"use .{', .'.join(IMAGE_FORMATS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot draw to {path}: folder {folder} does not exist")
