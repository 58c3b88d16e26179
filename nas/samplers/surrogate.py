"""A surrogate of the trained objective over interpretable genome features, with uncertainty.

An ensemble of gradient-boosted trees (scikit-learn), each fitted on a
bootstrap sample with its own seed: the mean is the prediction, the spread
between members the uncertainty. Features are
:func:`search_spaces.features.genome_features` (blocks per level, residual
share, depth, cross-scale and resampling edges, params, multiply-adds) plus
``proxy_<name>`` zero-cost scores when every trial recorded them.

Examples:
    >>> import numpy as np
    >>> X = np.arange(40, dtype=float).reshape(20, 2); y = X[:, 0] * 0.1
    >>> mean, std = Surrogate(n_models=3, seed=0).fit(X, y).predict(X[:2])
    >>> bool(mean[1] > mean[0]), std.shape
    (True, (2,))
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from search_spaces.features import feature_names, genome_features


class Surrogate:
    """Bootstrap ensemble of small gradient-boosted tree regressors."""

    def __init__(self, n_models: int = 5, seed: int = 0, n_estimators: int = 60, max_depth: int = 2):
        self.n_models, self.seed, self.n_estimators, self.max_depth = n_models, seed, n_estimators, max_depth
        self.models = []

    def fit(self, X, y) -> "Surrogate":
        """Fit every member on its own bootstrap sample of ``(X, y)``."""
        from sklearn.ensemble import GradientBoostingRegressor

        X, y = np.asarray(X, float), np.asarray(y, float)
        rng = np.random.default_rng(self.seed)
        self.models = []
        for i in range(self.n_models):
            rows = rng.integers(0, len(y), len(y)) if self.n_models > 1 else np.arange(len(y))
            model = GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                              learning_rate=0.1, subsample=1.0, random_state=self.seed + i)
            self.models.append(model.fit(X[rows], y[rows]))
        return self

    def predict(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the members' predictions."""
        predictions = np.stack([m.predict(np.asarray(X, float)) for m in self.models])
        return predictions.mean(axis=0), predictions.std(axis=0)


def expected_improvement(mean, std, best: float) -> np.ndarray:
    """Expected improvement over ``best`` (maximising) of Gaussian predictions."""
    from scipy.stats import norm

    mean, std = np.asarray(mean, float), np.maximum(np.asarray(std, float), 1e-9)
    z = (mean - best) / std
    return (mean - best) * norm.cdf(z) + std * norm.pdf(z)


def out_of_fold(X, y, folds: int = 5, seed: int = 0, n_models: int = 3) -> np.ndarray:
    """Each row's prediction by a surrogate fitted without its fold (how well the predictor ranks unseen genomes)."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    order = np.random.default_rng(seed).permutation(len(y))
    predictions = np.zeros(len(y))
    for k in range(min(folds, len(y))):
        held = order[k::min(folds, len(y))]
        kept = np.setdiff1d(order, held)
        predictions[held] = Surrogate(n_models, seed).fit(X[kept], y[kept]).predict(X[held])[0]
    return predictions


def design_matrix(genomes: Sequence, costs: Sequence[tuple], proxies: Optional[Sequence[dict]] = None,
                  proxy_names: Sequence[str] = ()) -> tuple[np.ndarray, list[str]]:
    """Rows of features for ``genomes`` (``costs``: (params, multiply-adds) each) and the column names."""
    if not genomes:
        return np.zeros((0, 0)), []
    names = feature_names(genomes[0])
    rows = []
    for i, (genome, (params, madds)) in enumerate(zip(genomes, costs)):
        features = genome_features(genome, params, madds)
        row = [float(features.get(n, 0.0)) for n in names]
        row += [float((proxies[i] or {}).get(p, math.nan)) if proxies else math.nan for p in proxy_names]
        rows.append(row)
    return np.array(rows, float), names + [f"proxy_{p}" for p in proxy_names]
