"""The confirmation's verdict as a picture: every run a dot, each candidate's interval, the seed marked.

Examples:
    >>> from visualize.verdict import plot_verdict
    >>> plot_verdict(verdict, "runs/one_hour/report/verdict.png")  # doctest: +SKIP
"""

from __future__ import annotations

import statistics


def plot_verdict(verdict: dict, path: str) -> None:
    """One panel per seed genome: each genome's runs as dots on the metric's axis, the seed's mean as a line.

    Under a candidate's dots runs its 95% Welch interval of the difference,
    placed at the seed's mean plus the difference (a tick marks the mean), so
    an interval clear of the seed's dashed line is a difference beyond noise
    before Holm's correction; green dots beat the seed after it. The winner is
    named in the panel's title. ``verdict`` is what :func:`nas.confirm.verdict`
    returns.
    """
    import matplotlib

    matplotlib.use("Agg")  # reports are written headless
    import matplotlib.pyplot as plt

    blocks = verdict["seeds"]
    if not blocks or not any(verdict["runs"].values()):
        raise ValueError("the confirmation has no finished run to draw yet")
    figure, axes = plt.subplots(len(blocks), 1, figsize=(8, 1.2 + 0.6 * (1 + max(len(b["candidates"]) for b in blocks))
                                                         * len(blocks)), squeeze=False)
    metric = verdict["metric"]
    for ax, block in zip(axes[:, 0], blocks):
        rows = [(f"{block['seed']} (seed)", block["runs"], None)]
        rows += [(row["fingerprint"] + ("  [winner]" if row["fingerprint"] == block["winner"] else ""),
                  verdict["runs"].get(row["fingerprint"], []), row) for row in block["candidates"]]
        seed_mean = statistics.fmean(block["runs"]) if block["runs"] else None
        for y, (label, runs, row) in enumerate(rows):
            color = "#DD8452" if row is None else ("#55A868" if row["beats_seed"] else "#4C72B0")
            ax.scatter(runs, [y] * len(runs), s=36, color=color, edgecolor="black", linewidth=0.5, zorder=3)
            comparison = row and row["comparison"]
            if comparison and seed_mean is not None:
                sign = 1.0 if verdict["direction"] == "maximize" else -1.0
                low, high = (seed_mean + sign * c for c in comparison["ci"])
                ax.plot([min(low, high), max(low, high)], [y + 0.22] * 2, color=color, linewidth=2)
                ax.plot([seed_mean + sign * comparison["difference"]], [y + 0.22], marker="|", color=color,
                        markersize=10)
        if seed_mean is not None:
            ax.axvline(seed_mean, color="#DD8452", linestyle="--", linewidth=1, zorder=1)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([label for label, _, _ in rows], fontfamily="monospace", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
        outcome = (f"winner: {block['winner']}" if block["winner"] else "no candidate beats it beyond noise")
        ax.set_title(f"against {block['seed']}: {outcome}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
