"""Judge proxies and search strategies on a recorded table (what ``bench/screening.py`` prints).

Examples:
    >>> from nas.fidelity import GenomeRow
    >>> entries = [GenomeRow(str(i), None, "sample", 10.0 * i, 5.0 * i, {"short": i / 10}, {"short": 1})
    ...            for i in range(10)]
    >>> report = judge(entries, {}, "short", features=[[i] for i in range(10)], repetitions=2)
    >>> report["correlations"]["multiply_adds"]["short"]["kendall"]
    1.0
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from nas.fidelity.pool import compare
from nas.screening.ranks import kendall, rank_ensemble, spearman
from nas.screening.registry import ENSEMBLE, ENSEMBLE_MEMBERS


def judge(entries: Sequence, scores: Mapping[str, Sequence[float]], fidelity: str,
          long_fidelity: Optional[str] = None, features=None, repetitions: int = 20, seed: int = 0,
          refit_every: int = 1, screened: Sequence[str] = (f"-{ENSEMBLE}", "-params", "-multiply_adds"),
          candidates: int = 8) -> dict:
    """Correlations of every proxy (plus params, multiply-adds, ensemble) with the objective, and the pool comparison.

    The pool comparison orders genomes by each proxy both ways: ``proxy:name``
    highest first, ``proxy:-name`` lowest first; the ``screened`` ones also as
    a screened search would use them (``screened:name``: each training the best
    of ``candidates`` untrained genomes drawn at random). The defaults are
    screening's default proxy and the two cost baselines it must beat.

    ``scores``: proxy name -> one score per entry. ``features``: one feature row per
    entry for the predictor and evolution (default: params and multiply-adds).
    Entries without ``fidelity`` are left out.
    """
    kept = [i for i, e in enumerate(entries) if fidelity in e.objective]
    # Costs at the objective's fidelity: the head (its class count) differs between fidelities.
    columns = {key: [entries[i].cost(fidelity, key) for i in kept] for key in ("params", "multiply_adds")}
    columns.update({name: [values[i] for i in kept] for name, values in scores.items()})
    if all(m in columns for m in ENSEMBLE_MEMBERS):
        columns[ENSEMBLE] = rank_ensemble({m: columns[m] for m in ENSEMBLE_MEMBERS})
    y = np.array([entries[i].objective[fidelity] for i in kept], float)
    correlations = {}
    for name, values in columns.items():
        row = {fidelity: {"spearman": spearman(values, y), "kendall": kendall(values, y)}}
        if long_fidelity:
            pairs = [(v, entries[i].objective[long_fidelity]) for v, i in zip(values, kept)
                     if long_fidelity in entries[i].objective]
            row[long_fidelity] = {"spearman": spearman(*zip(*pairs)) if pairs else None,
                                  "kendall": kendall(*zip(*pairs)) if pairs else None}
        correlations[name] = row
    if long_fidelity:  # how far the short fidelity itself ranks like the long one
        pairs = [(e.objective[fidelity], e.objective[long_fidelity]) for e in entries
                 if fidelity in e.objective and long_fidelity in e.objective]
        correlations[f"AP@{fidelity}"] = {long_fidelity: {"spearman": spearman(*zip(*pairs)) if pairs else None,
                                                          "kendall": kendall(*zip(*pairs)) if pairs else None}}
    X = np.array([features[i] for i in kept], float) if features is not None else \
        np.array([columns["params"], columns["multiply_adds"]], float).T
    # Both directions: on this space cheap networks may train better, so "lowest first" is a strategy too.
    orders = {}
    for name, values in columns.items():
        orders[f"proxy:{name}"] = values
        orders[f"proxy:-{name}"] = [None if v is None else -v for v in values]
    # The ensemble exists only where the table has all its members' scores; any other missing name is a typo.
    unknown = [name for name in screened if f"proxy:{name}" not in orders and name.lstrip("-") != ENSEMBLE]
    if unknown:
        raise ValueError(f"screened: no proxy {unknown[0]!r}; proxies are {', '.join(sorted(columns))}")
    screened = [name for name in screened if f"proxy:{name}" in orders]
    search = compare(X, y, orders, repetitions=repetitions, seed=seed, refit_every=refit_every,
                     screened=screened, candidates=candidates)
    return {"genomes": len(kept), "fidelity": fidelity, "correlations": correlations, "search": search}


def format_report(report: dict) -> str:
    """The report as two plain-text tables."""
    lines = [f"{report['genomes']} genomes, objective at fidelity {report['fidelity']!r}", "",
             f"{'proxy':<16} " + "  ".join(f"{f + ' spearman':>18} {f + ' kendall':>16}"
                                           for f in next(iter(report["correlations"].values())))]
    for name, row in report["correlations"].items():
        cells = "  ".join(f"{_num(v['spearman']):>18} {_num(v['kendall']):>16}" for v in row.values())
        lines.append(f"{name:<16} {cells}")
    lines += ["", f"{'strategy':<24} {'to best (mean ± sd)':>22} {'to top 5% (mean ± sd)':>24}"]
    for name, row in report["search"].items():
        best, top = row["to_best"], row["to_top5"]
        lines.append(f"{name:<24} {best['mean']:>14.1f} ± {best['std']:<5.1f} {top['mean']:>16.1f} ± {top['std']:<5.1f}")
    return "\n".join(lines)


def _num(value) -> str:
    return "-" if value is None else f"{value:+.3f}"
