"""One HTML page showing what a search found: Optuna's plots, AP against cost, best genomes.

Examples:
    >>> import optuna
    >>> from visualize.report import write_report
    >>> study = optuna.load_study(study_name="quickstart",
    ...                           storage="sqlite:///runs/quickstart/study.db")  # doctest: +SKIP
    >>> write_report(study, "runs/quickstart/report")  # doctest: +SKIP
    'runs/quickstart/report/index.html'
"""

from __future__ import annotations

import html
import os
import warnings

from nas.trials import best_trials, feasible_trials, ranked_trials
from nas.trials import metric_names
from search_spaces.genome import Genome


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # reports are written headless
    import matplotlib.pyplot as plt

    return plt


def _save(ax, path: str) -> None:
    figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    figure.set_size_inches(8, 5)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(figure)


def _quality_metric(study) -> str:
    """The metric plotted against cost: the first objective that is not a cost (AP, top1, ...)."""
    names = [n for n in metric_names(study) if n not in COST_COLUMNS]
    return names[0] if names else "AP"


# What the x axis of a quality-against-cost plot can be: the trial attribute, its scale and its label.
COSTS = {"multiply_adds": (1e9, "multiply-adds (G, at the task's image size)"),
         "latency_ms": (1.0, "deployed latency (ms, LiteRT at batch 1, this machine)")}
# Metrics with a column of their own in the report's table.
COST_COLUMNS = ("params", "multiply_adds", "latency_ms")


def plot_ap_against_cost(study, path: str, cost: str = "multiply_adds") -> None:
    """The study's quality metric (AP, top-1, ...) against a cost (:data:`COSTS`) for every trained trial.

    The Pareto front is joined and seed genomes are starred.
    """
    plt = _pyplot()
    metric = _quality_metric(study)
    scale, label = COSTS[cost]
    points = []
    for trial in feasible_trials(study):
        value = (trial.user_attrs.get("metrics") or {}).get(metric)
        amount = trial.user_attrs.get(cost)
        if value is not None and amount is not None:
            points.append((amount / scale, value, trial))
    if not points:
        raise ValueError(f"no trained trial has both {metric} and {cost} yet")
    figure, ax = plt.subplots(figsize=(8, 5))
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=25, color="#4C72B0", alpha=0.7, label="trial")
    front, best = [], -float("inf")
    for amount, value, trial in sorted(points, key=lambda p: (p[0], -p[1])):
        if value > best:
            front.append((amount, value))
            best = value
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="#C44E52", label="Pareto front")
    seeds = [p for p in points if p[2].user_attrs.get("seed_genome")]
    if seeds:
        ax.scatter([p[0] for p in seeds], [p[1] for p in seeds], s=220, marker="*", color="#DD8452",
                   edgecolor="black", zorder=3, label="seed genome")
    ax.set_xlabel(label)
    ax.set_ylabel(metric)
    ax.set_title(f"{study.study_name}: {metric} against {cost.replace('_', ' ')}")
    ax.legend()
    _save(ax, path)


def _optuna_plots(study):
    from optuna.visualization import matplotlib as ovm

    names = metric_names(study)
    target = {} if len(study.directions) == 1 else {"target": lambda t: t.values[0], "target_name": names[0]}
    return {
        "history.png": ("Optimization history", lambda: ovm.plot_optimization_history(study, **target)),
        "timeline.png": ("Timeline", lambda: ovm.plot_timeline(study)),
    }


def write_report(study, out_dir: str, top: int = 10, scaling: dict | None = None, input_size: int = 640,
                 verdict: dict | None = None, verdict_text: str = "") -> str:
    """Write plots, diagrams of the best (or Pareto) genomes and ``index.html``; returns its path.

    ``verdict`` (the confirmation's, :func:`nas.confirm.verdict`) adds a
    plot of every confirmation run, and ``verdict_text`` (its table, as
    :func:`nas.confirm.format_verdict` prints it) goes on the page.
    """
    from visualize.draw import draw_genome

    experiment = study.user_attrs.get("experiment") or {}
    if scaling is None and "model" in experiment:
        from nas.experiment import ModelConfig

        scaling = ModelConfig(**experiment["model"]).scaling
        input_size = experiment.get("task", {}).get("data", {}).get("image_size", input_size)
    best = best_trials(study)
    lacking = [t.number for t in best if "genome" not in t.user_attrs]
    if lacking:  # checked before anything is written, so no half-made report is left behind
        raise ValueError(f"trial(s) {lacking} of study {study.study_name!r} recorded no genome "
                         "(was the study made by spinenas?)")
    os.makedirs(out_dir, exist_ok=True)
    figures, skipped = [], []
    metric = _quality_metric(study)
    plots = {"ap_vs_cost.png": (f"{metric} against multiply-adds",
                                lambda: plot_ap_against_cost(study, os.path.join(out_dir, "ap_vs_cost.png")))}
    if any("latency_ms" in t.user_attrs for t in study.get_trials(deepcopy=False)):
        plots["ap_vs_latency.png"] = (f"{metric} against deployed latency", lambda: plot_ap_against_cost(
            study, os.path.join(out_dir, "ap_vs_latency.png"), cost="latency_ms"))
    from visualize.importance import FOLDS, MIN_TRIALS, plot_importances, plot_partial_dependence, usable_trials

    # Importances over architecture features a reader knows, not over the encoding's Lehmer digits.
    notes = []
    usable = len(usable_trials(study))
    if usable < MIN_TRIALS:  # a chart from a handful of trials would look as sure as one from hundreds
        notes.append(f"Feature importances and partial dependence are not drawn: they need at least {MIN_TRIALS} "
                     f"complete trials ({FOLDS} folds of 4 held-out trials), this study has {usable}.")
    else:
        based = f"out-of-fold over {usable} trials, {FOLDS} folds"
        plots["importances.png"] = (f"Architecture feature importances (surrogate permutation importance, {based})",
                                    lambda: plot_importances(study, os.path.join(out_dir, "importances.png")))
        plots["partial_dependence.png"] = (f"Partial dependence on the most important features ({based})",
                                           lambda: plot_partial_dependence(study, os.path.join(
                                               out_dir, "partial_dependence.png")))
    if verdict is not None:
        from visualize.verdict import plot_verdict

        plots["verdict.png"] = ("Confirmation: every run a dot, each candidate's 95% interval, the seed's mean dashed",
                                lambda: plot_verdict(verdict, os.path.join(out_dir, "verdict.png")))
    for name, (title, make) in _optuna_plots(study).items():
        plots[name] = (title, (lambda make=make, name=name: _save(make(), os.path.join(out_dir, name))))
    for name, (title, make) in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                make()
            figures.append((name, title))
        except Exception as err:  # a plot Optuna cannot draw yet (too few trials) is listed, not fatal
            skipped.append(f"{title}: {' '.join(str(err).split())[:160]}")
            _pyplot().close("all")
    diagrams = []
    for trial in best:
        genome = Genome.from_yaml(trial.user_attrs["genome"])
        name = f"trial_{trial.number:05d}.png"
        draw_genome(genome, os.path.join(out_dir, name), title=f"trial {trial.number}", scaling=scaling,
                    input_size=input_size)
        genome.save(os.path.join(out_dir, f"trial_{trial.number:05d}.yaml"))
        diagrams.append((name, trial))
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(_html(study, figures, skipped, diagrams, top, notes, verdict, verdict_text))
    return path


def _proxy_check_html(study) -> str:
    """How well the recorded proxies, the cost baselines and the predictor rank the trained trials."""
    from nas.search.proxy_check import CHECK_KEY, PICKED, check_study

    try:
        check = check_study(study)
    except Exception:  # a study without genomes or values: fall back to what the search recorded
        check = study.user_attrs.get(CHECK_KEY)
    if not check or not check.get("kendall"):
        return ""
    unpicked = check.get("kendall_unpicked") or {}

    def cell(tau):
        return f"<td>{'-' if tau is None else f'{tau:+.3f}'}</td>"

    rows = "".join(f"<tr><td style='text-align:left'>{html.escape(name)}</td>{cell(tau)}"
                   + (cell(unpicked.get(name)) if unpicked else "") + "</tr>" for name, tau in check["kendall"].items())
    screened = check.get("screened_by")
    note = ""
    if isinstance(screened, str):
        helps = "negative" if screened.startswith("-") else "positive"
        note = (f" The search screened candidates by <code>{html.escape(screened)}</code>: "
                f"it helps where its tau is {helps}.")
    provenance = check.get("provenance")
    if provenance and any(provenance.get(name) for name in PICKED):
        note += (" The trials: " + ", ".join(f"{n} {name}" for name, n in provenance.items() if n) + ". Over the "
                 "trials the proxy picked itself (pre-screened, screened) its tau is range-restricted"
                 + ("; the second column is over the trials it did not pick." if unpicked else
                    "; too few were not picked to check it apart from them."))
    head = "<th>score</th><th>tau</th>" + ("<th>tau, trials the proxy did not pick</th>" if unpicked else "")
    return (f"<h2>Proxies against the trained objective</h2><p>Kendall tau with {html.escape(check['objective'])} "
            f"over {check['trials']} trials (positive: a higher score picked better trials; params and "
            f"multiply-adds are the baselines to beat).{note}</p>"
            f"<table><tr>{head}</tr>{rows}</table>")


def _verdict_html(verdict: dict | None, text: str) -> str:
    if verdict is None:
        return ""
    return (f"<h2>Confirmation</h2><p>The best genomes and the seeds retrained over {verdict['repeats']} training "
            f"seeds each, at the confirmation's settings.</p><pre>{html.escape(text)}</pre>")


def _html(study, figures, skipped, diagrams, top: int, notes=(), verdict: dict | None = None,
          verdict_text: str = "") -> str:
    names = metric_names(study)
    counts = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    ranked = ranked_trials(study)[:top]
    best = {t.number for t in best_trials(study)}
    # Cost objectives already have a column of their own.
    shown = [i for i, n in enumerate(names) if n not in COST_COLUMNS]
    latency = any("latency_ms" in t.user_attrs for t in ranked)
    rows = "".join(
        "<tr{cls}><td>{n}</td>{values}<td>{p}</td><td>{m}</td>{l}<td><code>{f}</code></td></tr>".format(
            cls=' class="best"' if t.number in best else "", n=t.number,
            values="".join(f"<td>{t.values[i]:.4g}</td>" for i in shown),
            p=f"{t.user_attrs.get('params', 0) / 1e6:.2f} M", m=f"{t.user_attrs.get('multiply_adds', 0) / 1e9:.2f} G",
            l=f"<td>{t.user_attrs['latency_ms']:.1f} ms</td>" if latency and "latency_ms" in t.user_attrs
            else "<td></td>" if latency else "",
            f=html.escape(str(t.user_attrs.get("fingerprint", ""))))
        for t in ranked)
    head = "".join(f"<th>{html.escape(names[i])}</th>" for i in shown)
    cost_head = "<th>params</th><th>multiply-adds</th>" + ("<th>latency</th>" if latency else "")
    images = "".join(f'<figure><img src="{n}" alt="{html.escape(t)}"><figcaption>{html.escape(t)}</figcaption></figure>'
                     for n, t in figures)
    genomes = "".join(
        f'<figure><img src="{n}" alt="trial {t.number}"><figcaption>trial {t.number} '
        f'(<a href="trial_{t.number:05d}.yaml">genome</a>)</figcaption></figure>' for n, t in diagrams)
    missing = "".join(f"<li>{html.escape(s)}</li>" for s in skipped)
    remarks = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    state_text = ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()))
    check = _proxy_check_html(study)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(study.study_name)}: search report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}img{{max-width:100%}}
figure{{display:inline-block;margin:0 1em 1em 0;vertical-align:top;max-width:48%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
tr.best{{background:#fff3cd}}</style></head><body>
<h1>{html.escape(study.study_name)}</h1>
<p>{len(study.trials)} trials: {html.escape(state_text)}.</p>
<h2>Top trials</h2>
<table><tr><th>trial</th>{head}{cost_head}<th>fingerprint</th></tr>{rows}</table>
{_verdict_html(verdict, verdict_text)}
{check}
<h2>Best genomes</h2>{genomes or '<p>No complete, feasible trial yet.</p>'}
<h2>Plots</h2>{images}
{remarks}
{f'<h3>Not drawn</h3><ul>{missing}</ul>' if missing else ''}
</body></html>
"""
