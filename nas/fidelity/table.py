"""The benchmark table: one record per trained (genome, fidelity, seed), from a study or a JSON-lines file.

A record is plain data (JSON round-trips it unchanged)::

    {"item", "state" (COMPLETE or FAIL), "genome" (YAML; Genome.from_yaml reads it), "fingerprint", "role",
     "fidelity", "fidelity_fingerprint", "seed", "repeat", "metric", "value", "metrics", "params",
     "multiply_adds", "settings" (the train config), "timing", "wall_time_s", "versions", "machine",
     "fail_reason", "trial", "experiment", "experiment_fingerprint"}

``trial`` numbers the runs of one table: the run's number in its study, except
that a study which imported a table keeps the imported numbers and numbers
its own runs after the table's last (:func:`run_number`), so notes citing a
trial stay right as the table grows across machines.

:func:`load_genomes` reads the same table one genome at a time, its metric
averaged over training seeds at every fidelity: what benchmarks and
predictors need.

Examples:
    >>> from nas.fidelity import load_genomes, load_table
    >>> records = load_table("bench/results/fidelity_fidelity_shapes.jsonl")  # doctest: +SKIP
    >>> rows = load_genomes("bench/results/fidelity_fidelity_shapes.jsonl")  # doctest: +SKIP
    >>> rows[0].genome, rows[0].objective["proxy"], rows[0].seeds["proxy"]  # doctest: +SKIP
    (Genome(...), 0.41, 6)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Iterable, Optional

import optuna
from optuna.trial import TrialState

from nas.search.study import EXPERIMENT_KEY

NUMBERING_KEY = "imported_numbering"  # study attribute: {"from": first own trial, "offset": added to its number}
_FROM_TRIAL = ("item", "genome", "fingerprint", "role", "fidelity", "fidelity_fingerprint", "seed", "repeat",
               "params", "multiply_adds", "settings", "metrics", "timing", "wall_time_s", "versions", "machine",
               "fail_reason")


def records_from_study(study) -> list[dict]:
    """The study's finished items (complete, or failed in training), one record per item, sorted."""
    metric = study.user_attrs.get("metric")
    experiment = (study.user_attrs.get("experiment") or {}).get("name")
    fingerprint = study.user_attrs.get(EXPERIMENT_KEY)
    shift = study.user_attrs.get(NUMBERING_KEY)
    records = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        attrs = trial.user_attrs
        if "item" not in attrs or (trial.state == TrialState.FAIL and not attrs.get("training_failed")):
            continue  # an interrupted or orphaned run says nothing about the genome
        record = {key: attrs.get(key) for key in _FROM_TRIAL}
        number = attrs["trial"] if "trial" in attrs else _shifted(trial.number, shift)  # only imports carry one
        record.update(state=trial.state.name, trial=number, metric=metric,
                      value=trial.value if trial.state == TrialState.COMPLETE else None,
                      experiment=experiment, experiment_fingerprint=fingerprint)
        records.append(record)
    return _one_per_item(records)


def run_number(study, number: int) -> int:
    """The table's number for trial ``number`` of ``study``: shifted past an imported table's last run, if any."""
    return _shifted(number, study.user_attrs.get(NUMBERING_KEY))


def _shifted(number: int, shift: Optional[dict]) -> int:
    return number + shift["offset"] if shift and number >= shift["from"] else number


def _one_per_item(records: Iterable[dict]) -> list[dict]:
    # A complete result beats failures of the same item; among equals the first trial wins.
    best: dict = {}
    for record in records:
        kept = best.get(record["item"])
        if kept is None or (kept["state"] != "COMPLETE" and record["state"] == "COMPLETE"):
            best[record["item"]] = record
    return sorted(best.values(), key=lambda r: (r["fingerprint"], r["fidelity"], r["seed"]))


def load_table(source) -> list[dict]:
    """Records from a JSON-lines file (``--export``'s output) or an Optuna study, one per item, sorted."""
    if hasattr(source, "get_trials"):
        return records_from_study(source)
    path = os.fspath(source)
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON record ({err.msg})") from None
    missing = [n for n, r in enumerate(records, start=1) if not {"item", "fingerprint", "fidelity"} <= set(r)]
    if missing:
        raise ValueError(f"{path}: record(s) {missing[:5]} lack item, fingerprint or fidelity: not a fidelity table")
    return _one_per_item(records)


def import_records(study, records: list[dict]) -> int:
    """Add the table's runs that ``study`` lacks as finished trials (what ``--import-table`` does); returns how many.

    A complete run becomes a COMPLETE trial with its value, a failed training a
    FAIL trial that counts towards the item's retries; an item the study has
    finished already is left alone. So a committed table resumes on a new
    machine: the plan then finds those items done.
    """
    done = {t.user_attrs.get("item") for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.FAIL) and t.user_attrs.get("item")}
    added = 0
    for record in records:
        if record["item"] in done:
            continue
        attrs = {k: record[k] for k in _FROM_TRIAL if record.get(k) is not None}
        attrs["imported"] = True
        if record.get("trial") is not None:
            attrs["trial"] = record["trial"]
        complete = record.get("state", "COMPLETE") == "COMPLETE"
        if not complete:
            attrs["training_failed"] = True
        study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE if complete else TrialState.FAIL,
                                                  value=float(record["value"]) if complete else None,
                                                  user_attrs=attrs))
        done.add(record["item"])
        added += 1
    if added and NUMBERING_KEY not in study.user_attrs:
        # The first import fixes the numbering: later trials continue after the table's last run.
        imported = [t.user_attrs["trial"] for t in study.get_trials(deepcopy=False)
                    if t.user_attrs.get("imported") and "trial" in t.user_attrs]
        count = len(study.get_trials(deepcopy=False))
        study.set_user_attr(NUMBERING_KEY, {"from": count, "offset": max(0, max(imported, default=-1) + 1 - count)})
    return added


def export_jsonl(records: list[dict], path: str) -> int:
    """Write ``records`` as JSON lines (sorted keys, stable order, so the file diffs well); returns the count."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        for record in _one_per_item(records):
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    os.replace(temporary, path)  # a reader never sees half a table
    return len(records)


@dataclasses.dataclass
class GenomeRow:
    """One genome of a table: its costs and, per fidelity, its metric's mean over seeds and the seed count.

    Costs cover backbone plus head, and the head depends on the fidelity's data
    (its class count): compare genomes by ``cost(fidelity)``, never by costs
    recorded at different fidelities. ``params`` and ``multiply_adds`` are those
    of the genome's first recorded fidelity.
    """

    fingerprint: str
    genome: object  # a search_spaces Genome
    role: str  # seed, reference or sample
    params: float
    multiply_adds: float
    objective: dict  # fidelity -> mean metric over its complete runs
    seeds: dict  # fidelity -> number of complete runs
    costs: dict = dataclasses.field(default_factory=dict)  # fidelity -> {"params": ..., "multiply_adds": ...}

    def cost(self, fidelity: str, key: str) -> float:
        """``params`` or ``multiply_adds`` at ``fidelity`` (the first recorded fidelity's when not measured there)."""
        return self.costs.get(fidelity, {}).get(key, getattr(self, key))


def load_genomes(source, metric: Optional[str] = None, settings: Optional[dict] = None) -> list[GenomeRow]:
    """The table's genomes (``load_table``'s source), in the table's order (by fingerprint), with mean metrics.

    ``metric`` defaults to each record's own (the study's objective, e.g.
    ``AP``). Failed runs and non-finite values are left out, and genomes
    without a complete run. ``settings`` (fidelity name -> fingerprint, as
    ``nas.fidelity.plan.current_settings`` gives) keeps only runs made with
    those settings: a study can hold runs of a fidelity whose settings later
    changed (an exported table holds current ones only).
    """
    from search_spaces.genome import Genome

    rows: dict[str, GenomeRow] = {}
    values: dict = {}
    for record in load_table(source):
        value = (record.get("metrics") or {}).get(metric or record.get("metric"))
        if record.get("state", "COMPLETE") != "COMPLETE" or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            continue
        if settings is not None and settings.get(record["fidelity"]) != record.get("fidelity_fingerprint"):
            continue
        key = record["fingerprint"]
        if key not in rows:
            if not record.get("genome"):
                raise ValueError(f"record {record['item']}: no genome (YAML) in it; not a fidelity table record")
            rows[key] = GenomeRow(key, Genome.from_yaml(record["genome"]), record.get("role") or "sample",
                                  float(record.get("params") or 0), float(record.get("multiply_adds") or 0), {}, {})
        values.setdefault(key, {}).setdefault(record["fidelity"], []).append(float(value))
        rows[key].costs.setdefault(record["fidelity"], {"params": float(record.get("params") or 0),
                                                        "multiply_adds": float(record.get("multiply_adds") or 0)})
    for key, row in rows.items():
        for fidelity, runs in values[key].items():
            row.objective[fidelity] = sum(runs) / len(runs)
            row.seeds[fidelity] = len(runs)
    return list(rows.values())
