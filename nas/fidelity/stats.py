"""How well cheap fidelities rank architectures like the expensive one: rank correlations, top-k, seed noise.

Each genome's score at a fidelity is the mean of its complete runs there (over
training seeds). A pair of rankings uses only the genomes measured in both, and
says how many that was; fewer than two genomes, or one ranking that is all
ties, gives no statistic and a note instead of a number.

Examples:
    >>> pair = rank_pair({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 0.1, "b": 0.3, "c": 0.2}, "x", "y", top_k=1)
    >>> pair["n"], round(pair["kendall_tau"], 3), round(pair["spearman_rho"], 3), pair["top_k"]["overlap"]
    (3, 0.333, 0.5, 0)
"""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Optional

from nas.verdict import ALPHA, judge

COST_KEYS = ("params", "multiply_adds")


def runs(records: list[dict], fidelity: str) -> dict[str, list[float]]:
    """Genome fingerprint -> the values of its complete runs at ``fidelity`` (one per training seed)."""
    values: dict = {}
    for record in records:
        if record["fidelity"] == fidelity and record["state"] == "COMPLETE" and _finite(record.get("value")):
            values.setdefault(record["fingerprint"], []).append(float(record["value"]))
    return values


def scores(records: list[dict], fidelity: str) -> dict[str, float]:
    """Genome fingerprint -> mean value of its complete runs at ``fidelity``."""
    return {fingerprint: statistics.fmean(v) for fingerprint, v in runs(records, fidelity).items()}


def costs(records: list[dict], fidelity: str, key: str) -> dict[str, float]:
    """Genome fingerprint -> its ``params`` or ``multiply_adds`` at ``fidelity`` (known before training)."""
    return {r["fingerprint"]: float(r[key]) for r in records if r["fidelity"] == fidelity and _finite(r.get(key))}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _ties(values: list[float]) -> int:
    """How many values share their value with another one."""
    counts: dict = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return sum(c for c in counts.values() if c > 1)


def top_k_overlap(x: dict, y: dict, k: int, sign_x: float = 1.0, sign_y: float = 1.0) -> dict:
    """Of the ``k`` best genomes by ``y``, how many are among the ``k`` best by ``x`` (common genomes only).

    ``sign`` is +1 when larger is better. Ties are broken by fingerprint, so the answer is deterministic.
    """
    common = sorted(set(x) & set(y))
    k = min(k, len(common))
    if k < 1:
        return {"k": 0, "overlap": None, "fraction": None}
    best_x = set(sorted(common, key=lambda g: (-sign_x * x[g], g))[:k])
    best_y = set(sorted(common, key=lambda g: (-sign_y * y[g], g))[:k])
    overlap = len(best_x & best_y)
    return {"k": k, "overlap": overlap, "fraction": overlap / k}


def rank_pair(x: dict, y: dict, x_name: str, y_name: str, *, top_k: int = 5, sign_x: float = 1.0,
              sign_y: float = 1.0) -> dict:
    """Kendall tau-b and Spearman rho (with p-values) and top-k overlap of two genome -> value maps.

    Signs (+1: larger is better) turn values into "goodness" before ranking, so
    a positive correlation always means the two agree on which genomes are better.
    """
    from scipy import stats

    common = sorted(set(x) & set(y))
    a = [sign_x * x[g] for g in common]
    b = [sign_y * y[g] for g in common]
    result = {"x": x_name, "y": y_name, "n": len(common), "only_x": len(set(x) - set(y)),
              "only_y": len(set(y) - set(x)), "ties_x": _ties(a), "ties_y": _ties(b),
              "kendall_tau": None, "kendall_p": None, "spearman_rho": None, "spearman_p": None, "note": None,
              "top_k": top_k_overlap(x, y, top_k, sign_x, sign_y)}
    if len(common) < 2:
        result["note"] = f"{len(common)} genome(s) measured at both: no ranking to compare"
        return result
    if len(set(a)) < 2 or len(set(b)) < 2:
        result["note"] = f"all {x_name if len(set(a)) < 2 else y_name} values tie: rank correlation undefined"
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and tie warnings: the counts above say the same
        tau = stats.kendalltau(a, b)  # tau-b: corrects for ties in either ranking
        rho = stats.spearmanr(a, b)  # ties get their average rank
    result.update(kendall_tau=_number(tau.statistic), kendall_p=_number(tau.pvalue),
                  spearman_rho=_number(rho.statistic), spearman_p=_number(rho.pvalue))
    if result["ties_x"] or result["ties_y"]:
        result["note"] = "ties: tau-b and average ranks"
    return result


def _number(value) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


def spread(values: list[float]) -> dict:
    """n, min, max, mean and sample standard deviation (None below two values) of ``values``."""
    if not values:
        return {"n": 0, "min": None, "max": None, "mean": None, "std": None}
    return {"n": len(values), "min": min(values), "max": max(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None}


def fidelity_report(records: list[dict], fidelities: Optional[list[str]] = None, reference: Optional[str] = None,
                    *, direction: str = "maximize", top_k: int = 5) -> dict:
    """Everything ``spinenas fidelity`` prints and writes as ``fidelity.json``, from table records.

    ``fidelities`` (cheapest first) and ``reference`` default to the order the
    records name them in and the last of them.
    """
    if fidelities is None:
        fidelities = list(dict.fromkeys(r["fidelity"] for r in records))
    reference = reference or (fidelities[-1] if fidelities else None)
    sign = 1.0 if direction == "maximize" else -1.0
    metric = next((r.get("metric") for r in records if r.get("metric")), "value")
    by_fidelity = {name: scores(records, name) for name in fidelities}
    pairs = []
    for i, first in enumerate(fidelities):
        for second in fidelities[i + 1:]:
            pairs.append(rank_pair(by_fidelity[first], by_fidelity[second], first, second, top_k=top_k,
                                   sign_x=sign, sign_y=sign))
    against = []
    if reference is not None:
        ref_scores = by_fidelity.get(reference, {})
        for key in COST_KEYS:  # larger models taken as better: the baseline any proxy must beat
            against.append(rank_pair(costs(records, reference, key), ref_scores, key, reference, top_k=top_k,
                                     sign_y=sign))
        for name in fidelities:
            if name != reference:
                against.append(rank_pair(by_fidelity[name], ref_scores, name, reference, top_k=top_k,
                                         sign_x=sign, sign_y=sign))
    seed = next((r["fingerprint"] for r in records if r.get("role") == "seed"), None)
    if seed is None and records:  # no seed genome in the space: --repeats went to the first genome planned
        runs_of: dict = {}
        for r in records:
            runs_of[r["fingerprint"]] = runs_of.get(r["fingerprint"], 0) + 1
        seed = max(runs_of, key=lambda g: (runs_of[g], g == records[0]["fingerprint"]))
    runs_at = {name: runs(records, name) for name in fidelities}
    noise = {}
    for name in fidelities:
        seed_runs = runs_at[name].get(seed, [])
        across = list(by_fidelity[name].values())
        noise[name] = {**spread(seed_runs), "genomes_std": statistics.stdev(across) if len(across) > 1 else None}
    counts = {}
    for name in fidelities:
        mine = [r for r in records if r["fidelity"] == name]
        walls = [r["wall_time_s"] for r in mine if r["state"] == "COMPLETE" and _finite(r.get("wall_time_s"))]
        counts[name] = {"genomes": len(by_fidelity[name]), "complete": sum(r["state"] == "COMPLETE" for r in mine),
                        "failed": sum(r["state"] != "COMPLETE" for r in mine),
                        "median_wall_s": statistics.median(walls) if walls else None}
    genomes = {}
    for record in records:
        entry = genomes.setdefault(record["fingerprint"], {"fingerprint": record["fingerprint"],
                                                           "role": record.get("role"), "scores": {}})
        if record["fidelity"] == reference or "params" not in entry:
            entry["params"], entry["multiply_adds"] = record.get("params"), record.get("multiply_adds")
    for name, values in by_fidelity.items():
        for fingerprint, value in values.items():
            genomes[fingerprint]["scores"][name] = value
    failures = [{"fingerprint": r["fingerprint"], "fidelity": r["fidelity"], "seed": r["seed"],
                 "reason": r.get("fail_reason")} for r in records if r["state"] != "COMPLETE"]
    # Multiply-adds at each fidelity itself: the head (its class count) differs between fidelities.
    standing = {name: seed_standing(runs_at[name], seed, costs(records, name, "multiply_adds"), sign)
                for name in fidelities}
    return {"metric": metric, "direction": direction, "fidelities": fidelities, "reference": reference,
            "top_k": top_k, "counts": counts, "pairs": pairs, "against_reference": against,
            "seed_genome": seed, "seed_spread": noise, "seed_standing": standing, "genomes": list(genomes.values()),
            "failures": failures}


def seed_standing(runs_of: dict, seed: Optional[str], multiply_adds: dict, sign: float = 1.0,
                  alpha: float = ALPHA) -> dict:
    """Where the seed genome ranks at one fidelity, and who beats it beyond noise at no more multiply-adds.

    ``runs_of``: genome -> its runs there. Beyond noise is :func:`nas.verdict.judge`,
    the confirmation stage's test: every other genome against the seed's runs
    (Welch with two or more runs of its own; one run, as most genomes have,
    by :func:`nas.verdict.compare_one`'s prediction interval, which assumes the
    seed's noise), Holm-corrected over all of them (``tested``), beating it
    when the corrected p-value is below ``alpha``. ``beats`` (best first)
    keeps those at no more multiply-adds than the seed; None when the seed has
    fewer than two runs (noise unknown). ``closest``: the genome at no more
    multiply-adds with the smallest corrected p-value among those better on
    average. ``rank`` is 1 for the best mean of ``of`` genomes.

    Examples:
        >>> standing = seed_standing({"s": [0.40, 0.42, 0.44], "a": [0.52], "b": [0.47], "c": [0.30]}, "s",
        ...                          {"s": 2, "a": 2, "b": 1, "c": 1})
        >>> standing["rank"], standing["beats"], standing["tested"], round(standing["closest"]["p_holm"], 3)
        (3, [], 3, 0.105)
    """
    means = {g: statistics.fmean(v) for g, v in runs_of.items() if v}
    blank = {"rank": None, "of": len(means), "seed_runs": 0, "tested": 0, "alpha": alpha, "beats": None,
             "closest": None}
    if seed not in means:
        return blank
    mine = means[seed] * sign
    standing = {**blank, "rank": 1 + sum(1 for v in means.values() if v * sign > mine),
                "seed_runs": len(runs_of[seed])}
    if len(runs_of[seed]) < 2:
        return standing
    judged = judge({g: v for g, v in runs_of.items() if g != seed and v}, runs_of[seed], direction=sign, alpha=alpha,
                   one_run=True)
    limit = multiply_adds.get(seed)
    within = [g for g, row in judged.items() if row["comparison"] is not None and limit is not None
              and multiply_adds.get(g) is not None and multiply_adds[g] <= limit]
    beats = sorted((g for g in within if judged[g]["beats_seed"]), key=lambda g: -judged[g]["comparison"].difference)
    better = [g for g in within if judged[g]["comparison"].difference > 0]
    closest = None
    if better:
        g = min(better, key=lambda g: (judged[g]["p_holm"], -judged[g]["comparison"].difference, g))
        c = judged[g]["comparison"]
        closest = {"fingerprint": g, "difference": c.difference, "p": c.p_value, "p_holm": judged[g]["p_holm"],
                   "runs": c.n[0], "test": c.test}
    tested = sum(row["comparison"] is not None for row in judged.values())
    return {**standing, "tested": tested, "beats": beats, "closest": closest}


def format_report(report: dict) -> str:
    """The report as the lines ``spinenas fidelity`` prints."""
    lines = [f"{report['metric']} ({report['direction']}) by fidelity; reference: {report['reference']}",
             f"  {'fidelity':<14} {'genomes':>7} {'complete':>8} {'failed':>6} {'median s':>9}"]
    for name, c in report["counts"].items():
        wall = f"{c['median_wall_s']:9.1f}" if c["median_wall_s"] is not None else f"{'-':>9}"
        lines.append(f"  {name:<14} {c['genomes']:>7} {c['complete']:>8} {c['failed']:>6} {wall}")
    k = report["top_k"]
    lines.append(f"rank agreement (n: genomes measured at both; top-{k}: best {k} of y found in the best {k} of x)")
    lines.append(f"  {'x':<14} {'y':<14} {'n':>4} {'tau':>7} {'p':>7} {'rho':>7} {'p':>7} {'top-k':>6}  note")
    seen = set()
    for pair in report["against_reference"] + report["pairs"]:
        if (pair["x"], pair["y"]) in seen:
            continue
        seen.add((pair["x"], pair["y"]))
        top = pair["top_k"]
        overlap = f"{top['overlap']}/{top['k']}" if top["overlap"] is not None else "-"
        lines.append(f"  {pair['x']:<14} {pair['y']:<14} {pair['n']:>4} {_fmt(pair['kendall_tau'])} "
                     f"{_fmt(pair['kendall_p'])} {_fmt(pair['spearman_rho'])} {_fmt(pair['spearman_p'])} "
                     f"{overlap:>6}  {pair['note'] or ''}")
    lines.append(f"seed genome {report['seed_genome']} over training seeds (genomes std: spread of all genomes)")
    lines.append(f"  {'fidelity':<14} {'runs':>4} {'min':>7} {'max':>7} {'std':>7} {'genomes std':>11}")
    for name, s in report["seed_spread"].items():
        lines.append(f"  {name:<14} {s['n']:>4} {_fmt(s['min'])} {_fmt(s['max'])} {_fmt(s['std'])} "
                     f"{_fmt(s['genomes_std']):>11}")
    lines.append("seed genome's rank (1: best) and genomes better beyond noise at no more multiply-adds: each "
                 "against the seed's runs (one run: t prediction interval, df = seed runs - 1, the seed's noise "
                 "assumed; 2+ runs: Welch), Holm-corrected over every genome tested")
    for name, standing in report.get("seed_standing", {}).items():
        beats = standing["beats"]
        if standing["rank"] is None:
            lines.append(f"  {name:<14} the seed genome is not measured here")
            continue
        if beats is None:
            said = "noise unknown (one run of the seed)"
        else:
            said = (f"{len(beats)} beat it (Holm p < {standing['alpha']:g} over {standing['tested']})"
                    + (f": {', '.join(beats[:5])}" if beats else ""))
            near = standing["closest"]
            if near and not beats:
                said += (f"; closest {near['fingerprint']} {near['difference']:+.3f} (p {near['p']:.3f}, "
                         f"Holm {near['p_holm']:.3f})")
        lines.append(f"  {name:<14} rank {standing['rank']} of {standing['of']}; {said}")
    lines.extend(_genome_lines(report))
    if report["failures"]:
        lines.append(f"{len(report['failures'])} failed run(s) left out:")
        lines.extend(f"  {f['fingerprint']} at {f['fidelity']} seed {f['seed']}: {f['reason']}"
                     for f in report["failures"][:10])
    return "\n".join(lines)


def _genome_lines(report: dict) -> list[str]:
    """Every genome's mean at each fidelity, best at the reference first (then by the next costliest)."""
    names = list(report["counts"])
    order = [report["reference"], *[n for n in reversed(names) if n != report["reference"]]]
    better = -1.0 if report["direction"] == "maximize" else 1.0

    def key(genome):
        scores = genome["scores"]
        return [(name not in scores, better * scores.get(name, 0.0)) for name in order]

    marks = {"seed": "*", "reference": "r"}
    # No cost column: a genome's multiply-adds differ between fidelities (the head's class count).
    lines = [f"genomes: {report['metric']} at each fidelity, mean over seeds (* seed genome, r r50-like)",
             f"  {'genome':<18} " + " ".join(f"{n:>8}" for n in names)]
    for genome in sorted(report["genomes"], key=key):
        cells = " ".join(f"{genome['scores'][n]:8.3f}" if n in genome["scores"] else f"{'-':>8}" for n in names)
        lines.append(f"  {genome['fingerprint']:<16}{marks.get(genome['role'], ' '):>2} {cells}")
    return lines


def _fmt(value) -> str:
    return f"{value:7.3f}" if value is not None else f"{'-':>7}"
