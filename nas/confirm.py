"""The end of a search: retrain its best genomes and the seeds over several training seeds, and judge them.

A search's leaderboard holds one noisy run per genome, and its best run is
biased upwards (the winner's curse). The confirmation stage takes the
``confirm.top_k`` best distinct feasible genomes of the search study and
every seed genome, trains each ``confirm.repeats`` times (training seeds
``seed``, ``seed + 1``, ...) at the confirmation's settings (the experiment's
model and task with ``confirm.settings`` and ``confirm.data`` applied), and
compares each candidate with each seed genome (:mod:`nas.verdict`: Welch
intervals, Holm's correction). The runs are items of the study
``<study>-confirm`` in the experiment's storage, queued, claimed and resumed
by the fidelity machinery (:mod:`nas.fidelity.work_queue`): a killed
confirmation resumes without repeating a finished run, and a changed
``confirm`` section is new work (the old runs stay, out of the verdict).

Examples:
    >>> from nas.experiment import load_experiment
    >>> verdict = run_confirm(load_experiment("experiments/one_hour.yaml"))  # doctest: +SKIP
    >>> print(format_verdict(verdict))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import statistics
from typing import Callable, Mapping, Optional, Sequence

import optuna
from optuna.trial import TrialState

from nas.config import ConfigError
from nas.experiment.schema import LATENCY_METRIC
from nas.fidelity.plan import Item, Plan, fidelity_fingerprint
from nas.fidelity.run import open_fidelity_study, primary_metric
from nas.fidelity.work_queue import Worker, describe_time_left, enqueue_missing, requeue_orphans
from nas.search.storage import StorageError
from nas.search.study import load_study
from nas.tasks.base import COST_METRICS, DataError, model_cost
from nas.trials import best_trials, dominates, feasible_trials, trial_genome
from nas.verdict import judge, winner

FIDELITY = "confirm"
KIND = "confirm"
VERDICT_KEY = "verdict"


def confirm_settings(experiment) -> dict:
    """The confirmation's train config (the experiment's with ``confirm.settings`` and ``confirm.data``)."""
    if experiment.confirm is None:
        raise ConfigError(f"{experiment.source or experiment.name}: no confirm section; add one, e.g. "
                          "confirm: {top_k: 3, repeats: 3}")
    if not experiment.search_space.seed_genomes:
        raise ConfigError("confirm: the candidates are judged against the seed genomes, and "
                          "search_space.seed_genomes lists none (e.g. [spinenet-49])")
    return experiment.confirm_config()


def candidates(experiment, storage_url: Optional[str] = None, study_name: Optional[str] = None,
               seeds: Optional[list] = None) -> list:
    """The search study's ``top_k`` best distinct feasible genomes that are not seed genomes, best first.

    Best by the verdict's metric; with several objectives the search's Pareto
    front comes first (by that metric), then the other trials.
    """
    url = storage_url or experiment.storage_url
    name = study_name or experiment.study_name
    try:
        study = load_study(url, name)
    except (ConfigError, StorageError) as err:
        raise ConfigError(f"{err}; the confirmation reads the search's study: run spinenas search first") from None
    seeds = {g.fingerprint for g in (seeds if seeds is not None else _seed_genomes(experiment))}
    metric, direction = primary_metric(experiment)
    index = experiment.search.metric_names.index(metric) if metric in experiment.search.metric_names else 0
    sign = 1.0 if direction == "maximize" else -1.0
    ranked = sorted(feasible_trials(study), key=lambda t: (-sign * t.values[index], t.number))  # the verdict's metric
    if len(study.directions) > 1:  # several objectives: the search's Pareto front first, then the rest
        front = {t.number for t in best_trials(study)}
        ranked = [t for t in ranked if t.number in front] + [t for t in ranked if t.number not in front]
    picked, seen = [], set()
    for trial in ranked:
        fingerprint = trial.user_attrs.get("fingerprint")
        if fingerprint is None or fingerprint in seen:
            continue
        seen.add(fingerprint)
        if fingerprint in seeds:
            continue
        picked.append((trial.number, trial_genome(trial)))
        if len(picked) >= experiment.confirm.top_k:
            break
    if not seen:
        raise ConfigError(f"study {name!r} has no complete feasible trial to confirm; run spinenas search first")
    return picked


def make_confirm_plan(experiment, picked: list, num_classes: int, seeds: Optional[list] = None) -> Plan:
    """Every seed genome and every picked genome, ``confirm.repeats`` training seeds each, at the confirm settings."""
    config = confirm_settings(experiment)
    seeds = seeds if seeds is not None else _seed_genomes(experiment)
    settings_fp = fidelity_fingerprint(config)
    settings = _plain(config)
    genomes = [("seed", g) for g in seeds] + [("candidate", g) for _, g in picked]
    items = []
    for role, genome in genomes:
        total, _ = model_cost(experiment.task_plugin, genome, config, num_classes)
        for repeat in range(experiment.confirm.repeats):
            items.append(Item(genome, role, FIDELITY, settings_fp, experiment.seed + repeat, repeat,
                              float(total.params), float(total.multiply_adds), settings))
    return Plan(genomes, {FIDELITY: config}, FIDELITY, items, [])


def prepare_confirm_data(experiment, progress: bool = True):
    """Prepare the confirmation's data (``confirm.data``, else the task's) and return its ``DataSummary``."""
    config = confirm_settings(experiment)
    try:
        return experiment.task_plugin.prepare_data(config.task, progress=progress)
    except DataError as err:
        if experiment.confirm.data is None:
            raise
        raise DataError(f"confirm.data {experiment.confirm.data}: {err}; give a folder as `spinenas data import "
                        "voc|yolo SRC --out DIR` writes it") from None


def run_confirm(experiment, *, storage_url: Optional[str] = None, study_name: Optional[str] = None,
                log: Callable[[str], None] = print, train: bool = True, workers: int = 1,
                experiment_path: Optional[str] = None, overrides: Sequence[str] = ()) -> dict:
    """Queue the confirmation's missing runs, train them, and return the verdict (also stored on the study).

    With ``train=False`` only the recorded runs are judged. ``workers`` > 1
    trains in that many processes side by side, each with its share of the
    cores, claiming runs from the same queue (they need ``experiment_path``;
    each loads the file with ``overrides``); workers on other machines may
    join with ``spinenas confirm`` on the same storage.
    """
    summary = prepare_confirm_data(experiment, progress=train)
    log(f"confirm data: {summary.description}")
    seeds = _seed_genomes(experiment)
    picked = candidates(experiment, storage_url, study_name, seeds)
    plan = make_confirm_plan(experiment, picked, summary.num_classes, seeds)
    study = open_fidelity_study(experiment, storage_url, _study_name(experiment, study_name), kind=KIND,
                                create=train)
    if train:
        orphans = requeue_orphans(study)
        if orphans:
            log(f"marked confirmation trial(s) {orphans} failed: their process died")
        counts = enqueue_missing(study, plan, experiment.search.max_retries)
        log(f"confirm: {len(picked)} candidate(s) (search trials {', '.join(str(n) for n, _ in picked) or 'none'}) "
            f"and {len(seeds)} seed genome(s) x {experiment.confirm.repeats} seeds = "
            f"{len(plan.items)} run(s): {counts['complete']} complete, {counts['pending']} queued or running, "
            f"{counts['queued']} queued now; {describe_time_left(study, plan.keys)}")
        if counts["given_up"]:
            log(f"confirm: {len(counts['given_up'])} run(s) failed more than search.max_retries="
                f"{experiment.search.max_retries} time(s) and are left out of the verdict: "
                f"{', '.join(counts['given_up'][:5])}")
        if workers <= 1:
            _train(experiment, study, plan, storage_url, log)
        else:
            if experiment_path is None:
                raise ValueError("several confirmation workers need the experiment file's path")
            from nas.workers import cpu_shares, describe_threads, run_processes

            threads = cpu_shares(workers)
            run_processes(_worker_main, [(i, experiment_path, list(overrides), storage_url, study_name, os.getpid(),
                                          threads[i]) for i in range(workers)], "spinenas-confirm",
                          [describe_threads(t) if t else "" for t in threads], log)
    result = verdict(experiment, study, plan, {g.fingerprint: n for n, g in picked})
    if train:
        study.set_user_attr(VERDICT_KEY, result)
    return result


def _train(experiment, study, plan: Plan, storage_url: Optional[str], log) -> None:
    with Worker(experiment, study, plan.keys, primary_metric(experiment)[0], log, storage_url=storage_url,
                folder="confirm") as worker:
        worker.run()


def _worker_main(index: int, experiment_path: str, overrides: list, storage_url: Optional[str],
                 study_name: Optional[str], parent: int, threads: Optional[dict]) -> None:
    """One confirmation worker process: the parent's plan (the same search study gives the same candidates)."""
    import sys

    from nas.experiment import load_experiment
    from nas.workers import start_worker_process

    log = start_worker_process(index, parent, threads)
    experiment = load_experiment(experiment_path, overrides)
    seeds = _seed_genomes(experiment)
    plan = make_confirm_plan(experiment, candidates(experiment, storage_url, study_name, seeds),
                             prepare_confirm_data(experiment, progress=False).num_classes, seeds)
    study = open_fidelity_study(experiment, storage_url, _study_name(experiment, study_name), kind=KIND,
                                create=False)
    try:
        _train(experiment, study, plan, storage_url, log)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)


def verdict(experiment, study: optuna.Study, plan: Plan, search_trials: Optional[dict] = None) -> dict:
    """Each candidate against each seed genome, from the plan's complete runs (plain data)."""
    metric, direction = primary_metric(experiment)
    sign = 1.0 if direction == "maximize" else -1.0
    runs: dict[str, list] = {}
    other_runs: dict[str, dict[str, list]] = {}  # the other trained objectives' values, per genome
    keys, counted = plan.keys, set()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        item = trial.user_attrs.get("item")
        if item in keys and item not in counted and trial.value is not None and math.isfinite(trial.value):
            counted.add(item)  # an item trained twice (a retry raced its first run) is one run
            fingerprint = trial.user_attrs["fingerprint"]
            runs.setdefault(fingerprint, []).append(float(trial.value))
            for name, value in (trial.user_attrs.get("metrics") or {}).items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    other_runs.setdefault(fingerprint, {}).setdefault(name, []).append(float(value))
    costs = {item.genome.fingerprint: (item.params, item.multiply_adds) for item in plan.items}
    latency = _latencies(experiment, plan, study)
    limits = experiment.search.constraints
    within = {fp: (limits.max_params is None or p <= limits.max_params)
              and (limits.max_multiply_adds is None or m <= limits.max_multiply_adds)
              and (limits.max_latency_ms is None or latency[fp] <= limits.max_latency_ms)
              for fp, (p, m) in costs.items()}
    listed = experiment.search_space.load_seed_genomes(os.path.dirname(experiment.source or "."))
    names = {}
    for genome, name in zip(listed, experiment.search_space.seed_genomes):
        names.setdefault(genome.fingerprint, name)
    cands = [g.fingerprint for role, g in plan.genomes if role == "candidate"]
    result = {"metric": metric, "direction": direction, "settings": plan.items[0].fidelity_fingerprint if plan.items
              else None, "repeats": experiment.confirm.repeats, "runs": runs, "seeds": []}
    for role, seed in plan.genomes:
        if role != "seed":
            continue
        fp = seed.fingerprint
        judged = judge({c: runs.get(c, []) for c in cands}, runs.get(fp, []), direction=sign) \
            if len(runs.get(fp, [])) >= 2 else {c: {"comparison": None, "note": "the seed has fewer than 2 runs",
                                                     "p_holm": None, "beats_seed": False} for c in cands}
        rows = []
        for c in cands:
            row = judged[c]
            comparison = row["comparison"]
            rows.append({"fingerprint": c, "search_trial": (search_trials or {}).get(c),
                         "comparison": comparison.to_dict() if comparison else None, "note": row["note"],
                         "p_holm": row["p_holm"], "beats_seed": row["beats_seed"], "within_budget": within[c],
                         "params_ratio": costs[c][0] / costs[fp][0], "multiply_adds_ratio": costs[c][1] / costs[fp][1],
                         **({"latency_ms": latency[c], "latency_ratio": latency[c] / latency[fp]} if latency else {})})
        best = winner(judged, {c: within[c] for c in cands})
        result["seeds"].append({"seed": names.get(fp, fp), "fingerprint": fp, "runs": runs.get(fp, []),
                                "candidates": rows, "winner": best})
    if len(experiment.search.metric_names) > 1:
        objectives = {}
        for name, direction_name in zip(experiment.search.metric_names, experiment.search.directions):
            if name in COST_METRICS:
                values = {f: float(costs[f][0 if name == "params" else 1]) for f in costs}
            elif name == LATENCY_METRIC:
                values = latency
            elif name == metric:
                values = runs
            else:
                values = {f: by_metric.get(name, []) for f, by_metric in other_runs.items()}
            objectives[name] = (1.0 if direction_name == "maximize" else -1.0, values)
        result["pareto"] = confirmed_pareto([g.fingerprint for _, g in plan.genomes], objectives)
        result["objectives"] = list(experiment.search.metric_names)
    return result


def _latencies(experiment, plan: Plan, study) -> dict:
    """Genome fingerprint -> deployed latency (ms) when the experiment uses latency, else empty.

    The head's class count is the confirmation runs' (the seeds and candidates all train on the same data).
    """
    if experiment.latency is None:
        return {}
    from nas.search.latency import measure_in_child, meter_for

    classes = next((t.user_attrs["metrics"]["num_classes"] for t in study.get_trials(deepcopy=False)
                    if "num_classes" in (t.user_attrs.get("metrics") or {})), None)
    if classes is None:
        classes = prepare_confirm_data(experiment, progress=False).num_classes
    meter = meter_for(experiment, classes)
    genomes = {g.fingerprint: g for _, g in plan.genomes}
    if meter.config.source == "measured":
        return {fp: measure_in_child(experiment, classes, g) for fp, g in genomes.items()}
    return {fp: meter.predict(g).ms for fp, g in genomes.items()}


def confirmed_pareto(genomes: Sequence[str], objectives: Mapping[str, tuple]) -> list[str]:
    """The Pareto set of ``genomes`` by their confirmed values, in ``genomes``' order.

    ``objectives`` maps a name to (direction, values): +1 maximise or -1
    minimise; values per genome, a number for an exact cost (params,
    multiply-adds) or a list of runs for a trained metric, judged by its mean
    over the confirmation's training seeds (not by one lucky run). A genome
    with fewer than two runs of a trained metric is left out: it has no
    confirmed value. Whether a member beats a seed genome beyond noise is the
    per-candidate verdict's job; dominance here is by the means, so a
    noisy genome cannot shelter behind its own spread.
    """
    def value(name: str, genome: str) -> float:
        direction, values = objectives[name]
        v = values[genome]
        return direction * (statistics.fmean(v) if isinstance(v, list) else float(v))

    def usable(genome: str) -> bool:
        return all(genome in values and (not isinstance(values[genome], list) or len(values[genome]) >= 2)
                   for _, values in objectives.values())

    pool = [g for i, g in enumerate(genomes) if usable(g) and g not in genomes[:i]]
    points = {g: [value(name, g) for name in objectives] for g in pool}
    signs = [1.0] * len(objectives)  # the directions are folded into the values
    return [y for y in pool if not any(dominates(points[x], points[y], signs) for x in pool if x != y)]


def format_verdict(result: dict) -> str:
    """The verdict as a table per seed genome, and one line saying what won (or that nothing did)."""
    metric = result["metric"]
    lines = []
    for block in result["seeds"]:
        seed_runs = block["runs"]
        lines.append(f"against {block['seed']} [{block['fingerprint']}]: {metric} "
                     f"{_mean_sd(seed_runs)} over {len(seed_runs)} run(s)")
        latency = any("latency_ratio" in row for row in block["candidates"])
        lines.append(f"  {'candidate':<18} {'search':>6} {metric + ' mean+-sd':>16} {'difference [95% CI]':>26} "
                     f"{'p (Holm)':>9} {'params':>7} {'madds':>7}" + (f" {'latency':>7}" if latency else ""))
        for row in block["candidates"]:
            c = row["comparison"]
            runs = result["runs"].get(row["fingerprint"], [])
            if c is None:
                diff = row["note"]
            else:
                diff = f"{c['difference']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]"
            p = "-" if row["p_holm"] is None else f"{row['p_holm']:.3g}"
            mark = " beats" if row["beats_seed"] else ""
            budget = "" if row["within_budget"] else " (over budget)"
            lines.append(f"  {row['fingerprint']:<18} {'-' if row['search_trial'] is None else row['search_trial']:>6} {_mean_sd(runs):>16} "
                         f"{diff:>26} {p:>9} {row['params_ratio']:>6.2f}x {row['multiply_adds_ratio']:>6.2f}x"
                         + (f" {row['latency_ratio']:>6.2f}x" if "latency_ratio" in row else "")
                         + f"{mark}{budget}")
        if block["winner"]:
            lines.append(f"  winner: {block['winner']} beats {block['seed']} beyond noise at this budget")
        else:
            lines.append(f"  no candidate beats {block['seed']} beyond noise at this budget")
    if "pareto" in result:
        seeds = {block["fingerprint"]: block["seed"] for block in result["seeds"]}
        members = [f"{fp} ({seeds[fp]})" if fp in seeds else fp for fp in result["pareto"]]
        lines.append(f"confirmed Pareto set ({' vs '.join(result['objectives'])}, by the means over training "
                     f"seeds): {', '.join(members) or 'none'}")
    return "\n".join(lines)


def confirmation_study(experiment, storage_url: Optional[str] = None, study_name: Optional[str] = None):
    """The experiment's existing confirmation study (``<search study>-confirm``), for reading."""
    return open_fidelity_study(experiment, storage_url, _study_name(experiment, study_name), kind=KIND,
                               create=False)


def _study_name(experiment, study_name: Optional[str]) -> str:
    return f"{study_name or experiment.study_name}-{KIND}"


def _seed_genomes(experiment) -> list:
    """The experiment's seed genomes, each once (a genome listed twice is one seed)."""
    unique = {}
    for genome in experiment.search_space.load_seed_genomes(os.path.dirname(experiment.source or ".")):
        unique.setdefault(genome.fingerprint, genome)
    return list(unique.values())


def _plain(config) -> dict:
    from nas.config import to_data

    data = to_data(config)
    data["task"]["training"].pop("seed", None)
    return data


def _mean_sd(values: list) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f}+-{statistics.stdev(values):.4f}"
