"""Proxy fidelity: does a cheap training setting rank architectures like an expensive one?

``spinenas fidelity EXPERIMENT`` trains a seeded sample of the experiment's
space at every fidelity its ``fidelities`` section names, as trials of one
resumable Optuna study, then compares the rankings. One module per job:
:mod:`~nas.fidelity.plan` (what to train), :mod:`~nas.fidelity.run` (the
study and its workers), :mod:`~nas.fidelity.work_queue` (queueing, claiming
and training items), :mod:`~nas.fidelity.table` (records, JSON lines),
:mod:`~nas.fidelity.stats` (correlations, top-k, seed noise) and
:mod:`~nas.fidelity.plot` (the scatter plot).
"""

from nas.fidelity.plan import Item, Plan, make_plan
from nas.fidelity.run import open_fidelity_study, run_fidelity
from nas.fidelity.stats import fidelity_report, format_report, rank_pair
from nas.fidelity.table import GenomeRow, export_jsonl, load_genomes, load_table, records_from_study

__all__ = ["GenomeRow", "Item", "Plan", "export_jsonl", "fidelity_report", "format_report", "load_genomes",
           "load_table", "make_plan", "open_fidelity_study", "rank_pair", "records_from_study", "run_fidelity"]
