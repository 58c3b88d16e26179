"""Training-free screening: zero-cost proxies that rank genomes before any training.

One module per proxy (:mod:`~nas.screening.naswot`, :mod:`~nas.screening.synflow`,
:mod:`~nas.screening.snip`, :mod:`~nas.screening.grad_norm`,
:mod:`~nas.screening.zen`), each ``score(model, batch, loss_fn, seed) -> float``;
the registry (:mod:`~nas.screening.registry`), the runner
(:mod:`~nas.screening.scoring`) and rank statistics (:mod:`~nas.screening.ranks`).
What uses them lives with the search: the in-search check of the proxy
(:mod:`nas.search.proxy_check`) and the benchmark of the proxies against a
fidelity table (:mod:`nas.fidelity.proxies`). Importing this package does not
import TensorFlow.

Examples:
    >>> from nas.screening import proxy_names
    >>> "naswot" in proxy_names() and "multiply_adds" in proxy_names()
    True
"""

from nas.screening.ranks import kendall, rank_ensemble, spearman
from nas.screening.registry import (COST_PROXIES, ENSEMBLE, ENSEMBLE_MEMBERS, PROXIES, expand, proxy_names,
                                    register_proxy)
from nas.screening.scoring import score_genomes

__all__ = ["COST_PROXIES", "ENSEMBLE", "ENSEMBLE_MEMBERS", "PROXIES", "expand", "kendall", "proxy_names",
           "rank_ensemble", "register_proxy", "score_genomes", "spearman"]
