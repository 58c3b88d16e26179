"""What architecture features matter: out-of-fold permutation importances and partial dependence.

The study's complete trials become rows of interpretable features
(:func:`search_spaces.features.genome_features`: blocks per level, residual
share, depth, cross-scale edges, resampling counts, params, multiply-adds)
and the first objective. The trials are split into :data:`FOLDS` folds; a
gradient-boosted tree surrogate is fitted on all folds but one, and each
feature's importance is how much the surrogate's error on the held-out fold
grows when that column is shuffled (scikit-learn's permutation importance),
averaged over the folds. A surrogate scored on the trials it was fitted on
finds "important" features even in noise; held-out trials do not reward that.

Below :data:`MIN_TRIALS` trials there is no chart: five folds then hold fewer
than four trials each, and an importance measured on two or three held-out
trials says more about which trials fell in the fold than about the feature.

Examples:
    >>> import optuna
    >>> study = optuna.load_study(study_name="evolution", storage="sqlite:///runs/evolution/study.db")  # doctest: +SKIP
    >>> plot_importances(study, "importances.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np

FOLDS = 5
MIN_TRIALS = 4 * FOLDS  # at least four held-out trials in every fold


def usable_trials(study) -> list:
    """The feasible complete trials with a genome and a finite first objective: the rows the importances rest on."""
    from nas.trials import feasible_trials

    return [t for t in feasible_trials(study) if "genome" in t.user_attrs and math.isfinite(t.values[0])]


def feature_table(study):
    """``(X, y, names)``: interpretable features and the sign-adjusted first objective of :func:`usable_trials`."""
    from nas.samplers.surrogate import design_matrix
    from nas.trials import sign, trial_genome

    trials = usable_trials(study)
    if len(trials) < MIN_TRIALS:
        raise ValueError(f"out-of-fold importances need {MIN_TRIALS} complete trials with genomes "
                         f"({FOLDS} folds of 4), the study has {len(trials)}")
    costs = [(t.user_attrs.get("params", 0.0), t.user_attrs.get("multiply_adds", 0.0)) for t in trials]
    X, names = design_matrix([trial_genome(t) for t in trials], costs)
    y = np.array([sign(study.directions[0]) * t.values[0] for t in trials])
    varying = X.std(axis=0) > 0  # a constant feature has nothing to say
    return X[:, varying], y, [n for n, keep in zip(names, varying) if keep]


def _surrogate(seed: int):
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(n_estimators=60, max_depth=2, random_state=seed)


def _folds(X, y, seed: int):
    """``(model, held-out X, held-out y)`` per fold, each model fitted without its held-out trials."""
    from sklearn.model_selection import KFold

    for train, test in KFold(n_splits=FOLDS, shuffle=True, random_state=seed).split(X):
        yield _surrogate(seed).fit(X[train], y[train]), X[test], y[test]


def out_of_fold_importances(X, y, names, seed: int = 0, repeats: int = 10) -> list[tuple[str, float, float]]:
    """``(feature, mean, std)`` by decreasing mean: held-out error growth when the feature is shuffled.

    The growth in mean squared error is divided by the objective's variance, so
    it reads as the drop in out-of-fold R^2 (a fold of four trials has too
    little spread of its own to divide by).
    """
    from sklearn.inspection import permutation_importance

    if len(y) < MIN_TRIALS:
        raise ValueError(f"out-of-fold importances need {MIN_TRIALS} trials, got {len(y)}")
    scale = float(np.var(y)) or 1.0
    drops = []  # one row per fold and repeat
    for model, X_test, y_test in _folds(X, y, seed):
        result = permutation_importance(model, X_test, y_test, n_repeats=repeats, random_state=seed,
                                        scoring="neg_mean_squared_error")
        drops.append(result.importances.T / scale)
    drops = np.concatenate(drops)
    rows = sorted(zip(names, drops.mean(axis=0), drops.std(axis=0)), key=lambda r: -r[1])
    return [(n, float(m), float(s)) for n, m, s in rows]


def importances(study, seed: int = 0) -> list[tuple[str, float, float]]:
    """:func:`out_of_fold_importances` of the study's :func:`feature_table`."""
    return out_of_fold_importances(*feature_table(study), seed=seed)


def out_of_fold_partial_dependence(X, y, column: int, seed: int = 0, points: int = 20):
    """``(grid, average)``: the objective predicted as ``column`` sweeps its range, on held-out trials only.

    Each fold's surrogate predicts its own held-out trials with the column set
    to each grid value; the curve is the average over all trials.
    """
    grid = np.unique(np.quantile(X[:, column], np.linspace(0, 1, points)))
    total = np.zeros(len(grid))
    for model, X_test, _ in _folds(X, y, seed):
        for i, value in enumerate(grid):
            swept = X_test.copy()
            swept[:, column] = value
            total[i] += model.predict(swept).sum()
    return grid, total / len(y)


def plot_importances(study, path: str) -> None:
    """A bar chart of :func:`importances`."""
    from visualize.report import _pyplot, _save

    rows = importances(study)
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 5))
    ax.barh([r[0] for r in rows][::-1], [r[1] for r in rows][::-1], xerr=[r[2] for r in rows][::-1], color="#4C72B0")
    ax.set_xlabel("drop in out-of-fold R^2 when the feature is shuffled")
    ax.set_title(f"{study.study_name}: what the architecture features explain "
                 f"({len(usable_trials(study))} trials, {FOLDS} folds)")
    _save(ax, path)


def plot_partial_dependence(study, path: str, top: int = 4) -> None:
    """Out-of-fold partial dependence of the objective on the ``top`` most important features."""
    from nas.trials import metric_names
    from visualize.report import _pyplot, _save

    X, y, names = feature_table(study)
    chosen = [names.index(r[0]) for r in out_of_fold_importances(X, y, names)[:top]]
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 3.5), squeeze=False)
    for ax, column in zip(axes[0], chosen):
        grid, average = out_of_fold_partial_dependence(X, y, column)
        ax.plot(grid, average, color="#C44E52")
        ax.set_xlabel(names[column])
    axes[0][0].set_ylabel(f"{metric_names(study)[0]} (sign-adjusted)")
    figure.suptitle(f"held-out predictions, {len(y)} trials, {FOLDS} folds")
    _save(axes, path)
