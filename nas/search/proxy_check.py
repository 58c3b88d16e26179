"""The search checks itself: how well each recorded proxy, the baselines and the predictor rank trained trials.

Every ``search.check_every`` complete trials the driver records, as the
study's ``proxy_check`` user attribute, Kendall's tau between the trained
objective (sign-adjusted: positive tau means "higher score, better trial")
and: ``params``, ``multiply_adds``, every proxy in the trials'
``proxy_scores``, their ``ensemble`` when all members were recorded, and
``predictor`` (out-of-fold predictions of the surrogate on the interpretable
features, from 6 trials on).

It also says which trials it rests on and how each was chosen
(``provenance``): a seed genome, pre-screened (the best of a random pool by
the screening proxy), screened (a sampler's best of several candidates by
the proxy) or sampled without the proxy. A proxy's tau over trials it picked
itself is range-restricted (it never sees the genomes it ranked low), so the
check repeats the taus over the trials the proxy did not pick
(``kendall_unpicked``) once there are ``MIN_UNPICKED`` of them.

Examples:
    >>> check = {"trials": 10, "objective": "AP", "kendall": {"multiply_adds": 0.2, "naswot": None}}
    >>> format_check(check)
    'proxy check over 10 trials (Kendall tau with AP): multiply_adds +0.20, naswot -'
    >>> format_check({**check, "screened_by": "-multiply_adds"}).split("; ")[1]
    'screened by -multiply_adds (it helps where its tau is negative)'
    >>> picked = {**check, "provenance": {"seed": 1, "pre-screened": 4, "screened": 0, "sampled": 5},
    ...           "kendall_unpicked": {"multiply_adds": 0.1}}
    >>> format_check(picked).split(": ", 1)[0]
    'proxy check over 10 trials (1 seed, 4 pre-screened, 5 sampled) (Kendall tau with AP)'
    >>> format_check(picked).split("; ")[1]
    'over the 6 the proxy did not pick: multiply_adds +0.10'
"""

from __future__ import annotations

import math

from nas.screening.ranks import kendall, rank_ensemble
from nas.screening.registry import ENSEMBLE, ENSEMBLE_MEMBERS

CHECK_KEY = "proxy_check"
MIN_PREDICTOR_TRIALS = 6
MIN_UNPICKED = 5
# How a trial's genome was chosen, in the order the counts are printed.
ORIGINS = ("seed", "pre-screened", "screened", "sampled")
PICKED = ("pre-screened", "screened")  # chosen by the screening proxy


def proxy_columns(trials) -> dict[str, list]:
    """Name -> one value per trial: the cost baselines, every recorded proxy, and the ensemble when complete."""
    columns = {"params": [t.user_attrs.get("params") for t in trials],
               "multiply_adds": [t.user_attrs.get("multiply_adds") for t in trials]}
    recorded = sorted({name for t in trials for name in (t.user_attrs.get("proxy_scores") or {})} - set(columns))
    for name in recorded:
        columns[name] = [(t.user_attrs.get("proxy_scores") or {}).get(name) for t in trials]
    if all(m in columns and None not in columns[m] for m in ENSEMBLE_MEMBERS):
        columns[ENSEMBLE] = rank_ensemble({m: columns[m] for m in ENSEMBLE_MEMBERS})
    return columns


def origin(trial) -> str:
    """How ``trial``'s genome was chosen: one of :data:`ORIGINS` (from the marks the search leaves on it)."""
    attrs = trial.user_attrs
    if "seed_genome" in attrs:
        return "seed"
    if "prescreen_rank" in attrs:
        return "pre-screened"
    if "screened_from" in attrs:
        return "screened"
    return "sampled"


def check_study(study) -> dict:
    """Kendall tau of every column of :func:`proxy_columns` (and the predictor) with the first objective."""
    from nas.trials import feasible_trials, sign
    from nas.trials import metric_names

    trials = [t for t in feasible_trials(study) if t.values and math.isfinite(t.values[0])]
    direction = sign(study.directions[0])
    y = [direction * t.values[0] for t in trials]
    taus = {name: kendall(values, y) for name, values in proxy_columns(trials).items()}
    if len(trials) >= MIN_PREDICTOR_TRIALS:
        taus["predictor"] = kendall(list(_out_of_fold(trials, y)), y)
    screened = sorted({t.user_attrs["proxy"] for t in trials if t.user_attrs.get("proxy")})
    origins = [origin(t) for t in trials]
    provenance = {name: origins.count(name) for name in ORIGINS}
    check = {"trials": len(trials), "objective": metric_names(study)[0], "kendall": taus,
             "screened_by": screened[0] if len(screened) == 1 else (screened or None), "provenance": provenance}
    unpicked = [i for i, o in enumerate(origins) if o not in PICKED]
    if len(unpicked) < len(trials) and len(unpicked) >= MIN_UNPICKED:
        columns = proxy_columns([trials[i] for i in unpicked])
        check["kendall_unpicked"] = {name: kendall(values, [y[i] for i in unpicked])
                                     for name, values in columns.items()}
    return check


def _out_of_fold(trials, y):
    from nas.samplers.surrogate import design_matrix, out_of_fold
    from nas.trials import trial_genome

    genomes = [trial_genome(t) for t in trials]
    costs = [(t.user_attrs.get("params", 0.0), t.user_attrs.get("multiply_adds", 0.0)) for t in trials]
    X, _ = design_matrix(genomes, costs)
    return out_of_fold(X, y)


def record_check(study, every: int) -> dict | None:
    """Run :func:`check_study` when the complete-trial count reaches a multiple of ``every``; store it on the study."""
    from nas.trials import feasible_trials

    n = len(feasible_trials(study))
    stored = study.user_attrs.get(CHECK_KEY) or {}
    if not every or n == 0 or n % every or stored.get("trials") == n:
        return None
    check = check_study(study)
    history = [*stored.get("history", []), {"trials": check["trials"], "kendall": check["kendall"]}]
    study.set_user_attr(CHECK_KEY, {**check, "history": history})
    return check


def format_check(check: dict) -> str:
    """One line: each column's tau, which trials they rest on, and the taus over the trials the proxy did not pick."""
    provenance = check.get("provenance")
    made_of = ""
    if provenance:
        made_of = " (" + ", ".join(f"{n} {name}" for name, n in provenance.items() if n) + ")"
    line = (f"proxy check over {check['trials']} trials{made_of} (Kendall tau with {check['objective']}): "
            f"{_taus(check['kendall'])}")
    unpicked = check.get("kendall_unpicked")
    if unpicked:
        count = sum(n for name, n in provenance.items() if name not in PICKED)
        line += f"; over the {count} the proxy did not pick: {_taus(unpicked)}"
    screened = check.get("screened_by")
    if isinstance(screened, str):
        helps = "negative" if screened.startswith("-") else "positive"
        line += f"; screened by {screened} (it helps where its tau is {helps})"
    return line


def _taus(taus: dict) -> str:
    return ", ".join(f"{name} {tau:+.2f}" if tau is not None else f"{name} -" for name, tau in taus.items())
