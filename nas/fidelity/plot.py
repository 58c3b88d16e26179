"""The scatter plot of one fidelity against another: one point per genome, the seed genome starred."""

from __future__ import annotations

from nas.fidelity.stats import COST_KEYS, costs, rank_pair, scores


def scatter_plot(records: list[dict], x: str, y: str, path: str, *, metric: str = "value",
                 direction: str = "maximize") -> dict:
    """Write a PNG of each genome's score at ``y`` against ``x`` (a fidelity, ``params`` or ``multiply_adds``).

    Genomes with several training seeds get a bar from their lowest to their
    highest run. Returns the pair's statistics (as :func:`rank_pair`).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    xs = costs(records, y, x) if x in COST_KEYS else scores(records, x)
    ys = scores(records, y)
    sign = 1.0 if direction == "maximize" else -1.0
    pair = rank_pair(xs, ys, x, y, sign_x=1.0 if x in COST_KEYS else sign, sign_y=sign)
    roles = {r["fingerprint"]: r.get("role") for r in records}
    common = sorted(set(xs) & set(ys))
    figure, axes = plt.subplots(figsize=(6, 5), dpi=110)
    styles = {"seed": dict(marker="*", s=220, color="tab:red", label="seed genome", zorder=3),
              "reference": dict(marker="s", s=70, color="tab:green", label="r50-like", zorder=3),
              "sample": dict(marker="o", s=30, color="tab:blue", label="sampled", alpha=0.8)}
    for role, style in styles.items():
        chosen = [g for g in common if roles.get(g, "sample") == role]
        if chosen:
            axes.scatter([xs[g] for g in chosen], [ys[g] for g in chosen], **style)
    runs: dict = {}
    for record in records:
        if record["fidelity"] == y and record["state"] == "COMPLETE" and record.get("value") is not None:
            runs.setdefault(record["fingerprint"], []).append(record["value"])
    for genome in common:
        values = runs.get(genome, [])
        if len(values) > 1:
            axes.plot([xs[genome]] * 2, [min(values), max(values)], color="grey", linewidth=1, zorder=1)
    if x in COST_KEYS:
        axes.set_xscale("log")
    axes.set_xlabel(x if x in COST_KEYS else f"{metric} at {x}")
    axes.set_ylabel(f"{metric} at {y}")
    tau = "-" if pair["kendall_tau"] is None else f"{pair['kendall_tau']:.2f}"
    rho = "-" if pair["spearman_rho"] is None else f"{pair['spearman_rho']:.2f}"
    axes.set_title(f"{y} against {x}: Kendall tau {tau}, Spearman rho {rho} (n={pair['n']})", fontsize=10)
    axes.grid(alpha=0.3)
    if common:
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return pair
