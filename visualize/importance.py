"""What architecture features matter: surrogate permutation importances and partial dependence.

The study's complete trials become rows of interpretable features
(:func:`search_spaces.features.genome_features`: blocks per level, residual
share, depth, cross-scale edges, resampling counts, params, multiply-adds)
and the first objective; a gradient-boosted tree surrogate is fitted on them,
and each feature's importance is how much the surrogate's R^2 drops when that
column is shuffled (scikit-learn's permutation importance).

Example:
    >>> import optuna
    >>> study = optuna.load_study(study_name="evolution", storage="sqlite:///runs/evolution/study.db")  # doctest: +SKIP
    >>> plot_importances(study, "importances.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np

MIN_TRIALS = 5


def feature_table(study):
    """``(X, y, names)``: interpretable features and the sign-adjusted first objective of the feasible trials."""
    from nas.samplers.surrogate import design_matrix
    from nas.trials import feasible_trials, sign
    from nas.trials import trial_genome

    trials = [t for t in feasible_trials(study) if "genome" in t.user_attrs and math.isfinite(t.values[0])]
    if len(trials) < MIN_TRIALS:
        raise ValueError(f"needs {MIN_TRIALS} complete trials with genomes, the study has {len(trials)}")
    costs = [(t.user_attrs.get("params", 0.0), t.user_attrs.get("multiply_adds", 0.0)) for t in trials]
    X, names = design_matrix([trial_genome(t) for t in trials], costs)
    y = np.array([sign(study.directions[0]) * t.values[0] for t in trials])
    varying = X.std(axis=0) > 0  # a constant feature has nothing to say
    return X[:, varying], y, [n for n, keep in zip(names, varying) if keep]


def importances(study, seed: int = 0) -> list[tuple[str, float, float]]:
    """``(feature, mean importance, std)`` by decreasing importance, and the fitted surrogate's data."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.inspection import permutation_importance

    X, y, names = feature_table(study)
    model = GradientBoostingRegressor(n_estimators=60, max_depth=2, random_state=seed).fit(X, y)
    result = permutation_importance(model, X, y, n_repeats=10, random_state=seed)
    rows = sorted(zip(names, result.importances_mean, result.importances_std), key=lambda r: -r[1])
    return [(n, float(m), float(s)) for n, m, s in rows]


def plot_importances(study, path: str) -> None:
    """A bar chart of :func:`importances`."""
    from visualize.report import _pyplot, _save

    rows = importances(study)
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 5))
    ax.barh([r[0] for r in rows][::-1], [r[1] for r in rows][::-1], xerr=[r[2] for r in rows][::-1], color="#4C72B0")
    ax.set_xlabel("drop in surrogate R^2 when the feature is shuffled")
    ax.set_title(f"{study.study_name}: what the architecture features explain")
    _save(ax, path)


def plot_partial_dependence(study, path: str, top: int = 4) -> None:
    """The surrogate's partial dependence of the objective on the ``top`` most important features."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.inspection import partial_dependence

    from nas.trials import metric_names
    from visualize.report import _pyplot, _save

    X, y, names = feature_table(study)
    model = GradientBoostingRegressor(n_estimators=60, max_depth=2, random_state=0).fit(X, y)
    chosen = [names.index(r[0]) for r in importances(study)[:top]]
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 3.5), squeeze=False)
    for ax, column in zip(axes[0], chosen):
        result = partial_dependence(model, X, [column], kind="average")
        ax.plot(result["grid_values"][0], result["average"][0], color="#C44E52")
        ax.set_xlabel(names[column])
    axes[0][0].set_ylabel(f"{metric_names(study)[0]} (sign-adjusted)")
    _save(axes, path)
