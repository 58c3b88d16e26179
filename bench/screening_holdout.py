"""Screening's default proxy chosen on held-out data: pick proxy and sign on one half of a table, test on the other.

Run by hand (from the repository root):

    python bench/screening_holdout.py --score     # (re)compute the table's proxy scores, resumable
    python bench/screening_holdout.py             # choose on half A, report tau on half B -> JSON

``--score`` scores every genome of the recorded table with the current
proxies (``experiments/proxy_shapes.yaml``'s model and task, seed 0, as
``bench/screening.py`` does) one genome at a time, appending each to
``<table>.proxies.json.partial`` so a killed run resumes where it stopped;
when every genome is in, it writes ``<table>.proxies.json`` (the cache
``bench/screening.py`` reads) and removes the partial file.

The choice: every candidate (the model proxies, their ``ensemble``, ``params``
and ``multiply_adds``, each either way round) is ranked by Kendall's tau-b
with trained AP at ``--fidelity`` over half A of the genomes, and the best
is chosen; its tau and p-value are then measured on half B alone, which the
choice never saw (the ensemble's ranks are taken within each half, as a
search ranks the candidates it scores together). The split is fixed (the
sorted fingerprints shuffled by ``--seed``) and written out. Repeated random
2-fold splits (``--splits``) say how stable the choice is and what tau a
proxy chosen this way keeps on unseen genomes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TABLE = "bench/results/fidelity_fidelity_shapes.jsonl"
OUT = "bench/results/screening_holdout.json"
COSTS = ("params", "multiply_adds")


def score(table: str, experiment: str, seed: int, limit) -> None:
    """Score the table's genomes not yet in the partial file, one at a time; finish the cache when all are in."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from nas.cpu import onednn_settings, use_settings

    use_settings(onednn_settings())  # before TensorFlow loads, as trials do
    from nas.experiment import load_train_config
    from nas.fidelity import load_genomes
    from nas.screening import PROXIES, score_genomes
    from nas.tasks import get_task

    entries = load_genomes(table)
    partial, cache = f"{table}.proxies.json.partial", f"{table}.proxies.json"
    done = {}
    if os.path.exists(partial):
        with open(partial, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    done[row["fingerprint"]] = row
    todo = [e for e in entries if e.fingerprint not in done][:limit]
    print(f"{len(done)} of {len(entries)} genomes scored before; scoring {len(todo)}", flush=True)
    if todo:
        config = load_train_config(experiment)
        task = get_task(config.task.name)
        # One batch and class count for all: what score_genomes would make for every call anyway.
        num_classes = task.prepare_data(config.task).num_classes
        batch = task.minibatch(config, 8, seed)
        with open(partial, "a", encoding="utf-8") as handle:
            for entry in todo:
                mark = time.perf_counter()
                row = score_genomes([entry.genome], config, list(PROXIES), seed=seed, batch=batch,
                                    num_classes=num_classes)[0]
                seconds = time.perf_counter() - mark
                done[entry.fingerprint] = {"fingerprint": entry.fingerprint, "scores": row, "seconds": seconds}
                handle.write(json.dumps(done[entry.fingerprint]) + "\n")
                handle.flush()
                print(f"  {entry.fingerprint} {seconds:6.1f} s  {row}", flush=True)
    seconds = [row["seconds"] for row in done.values()]
    if seconds:
        print(f"{len(seconds)} genomes, {statistics.mean(seconds):.1f} s each on average, {sum(seconds) / 60:.1f} min "
              f"in all", flush=True)
    if len(done) == len(entries):
        with open(cache, "w", encoding="utf-8") as handle:
            json.dump({e.fingerprint: done[e.fingerprint]["scores"] for e in entries}, handle)
        os.remove(partial)
        print(f"wrote {cache}")


def candidates(entries, scores: dict, fidelity: str) -> dict:
    """Candidate name (signed) -> function of a list of entries giving one score per entry (higher: predicted better)."""
    from nas.screening import ENSEMBLE_MEMBERS, rank_ensemble

    def column(name):
        if name in COSTS:
            return lambda group: [e.cost(fidelity, name) for e in group]
        if name == "ensemble":  # ranks among the genomes scored together: this group only
            return lambda group: rank_ensemble({m: [scores[e.fingerprint][m] for e in group]
                                                for m in ENSEMBLE_MEMBERS})
        return lambda group: [scores[e.fingerprint][name] for e in group]

    names = [*COSTS, *ENSEMBLE_MEMBERS, "ensemble"]
    out = {}
    for name in names:
        values = column(name)
        out[name] = values
        out[f"-{name}"] = (lambda f: lambda group: [-v for v in f(group)])(values)
    return out


def tau(values, objective) -> dict:
    """Kendall tau-b and its two-sided p-value over the finite pairs (None below 3 pairs or a constant side)."""
    from scipy.stats import kendalltau

    pairs = [(v, y) for v, y in zip(values, objective) if v is not None and math.isfinite(v) and math.isfinite(y)]
    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return {"n": len(pairs), "tau": None, "p": None}
    result = kendalltau(*zip(*pairs))
    return {"n": len(pairs), "tau": round(float(result.statistic), 4), "p": round(float(result.pvalue), 4)}


def choose(group, columns, fidelity: str) -> tuple[str, dict]:
    """The candidate with the largest tau on ``group`` (ties: the first in ``columns``' order) and every tau."""
    y = [e.objective[fidelity] for e in group]
    taus = {name: tau(f(group), y) for name, f in columns.items()}
    best = max(taus, key=lambda n: taus[n]["tau"] if taus[n]["tau"] is not None else -math.inf)
    return best, taus


def held_out(group, columns, name: str, fidelities) -> dict:
    """``name``'s tau with trained AP on ``group`` at each fidelity (only the genomes measured there)."""
    out = {}
    for fidelity in fidelities:
        measured = [e for e in group if fidelity in e.objective]
        # Costs are the objective fidelity's (see candidates); the ensemble ranks within the measured genomes.
        out[fidelity] = tau(columns[name](measured), [e.objective[fidelity] for e in measured])
    return out


def holdout(table: str, fidelity: str, seed: int, splits: int) -> dict:
    """The fixed split's choice and held-out taus, both directions of it, and repeated random 2-fold splits."""
    from nas.fidelity import load_genomes

    if os.path.exists(f"{table}.proxies.json.partial"):  # a rescoring under way: the cache may be stale
        raise SystemExit(f"{table}.proxies.json.partial exists: finish --score first")
    with open(f"{table}.proxies.json", encoding="utf-8") as handle:
        scores = json.load(handle)
    entries = [e for e in load_genomes(table) if fidelity in e.objective]
    missing = [e.fingerprint for e in entries if e.fingerprint not in scores]
    if missing:
        raise SystemExit(f"{len(missing)} genomes have no proxy scores: run --score first")
    fidelities = list(dict.fromkeys(f for e in entries for f in e.objective))
    columns = candidates(entries, scores, fidelity)
    order = sorted(entries, key=lambda e: e.fingerprint)
    random.Random(seed).shuffle(order)
    half = len(order) // 2
    a, b = order[:half], order[half:]
    folds = []
    for name, (chosen_on, tested_on) in {"A->B": (a, b), "B->A": (b, a)}.items():
        best, taus = choose(chosen_on, columns, fidelity)
        folds.append({"fold": name, "chosen": best, "choice_half_taus": taus,
                      "held_out": held_out(tested_on, columns, best, fidelities),
                      "held_out_all": {n: tau(f(tested_on), [e.objective[fidelity] for e in tested_on])
                                       for n, f in columns.items()}})
    rng = random.Random(seed + 1)
    repeats, each = [], {}
    for _ in range(splits):
        shuffled = list(order)
        rng.shuffle(shuffled)
        for chosen_on, tested_on in ((shuffled[:half], shuffled[half:]), (shuffled[half:], shuffled[:half])):
            best, _ = choose(chosen_on, columns, fidelity)
            y = [e.objective[fidelity] for e in tested_on]
            every = {name: tau(f(tested_on), y)["tau"] for name, f in columns.items()}
            for name, value in every.items():
                if value is not None:
                    each.setdefault(name, []).append(value)
            repeats.append((best, every[best]))
    picked = {}
    for best, value in repeats:
        picked.setdefault(best, []).append(value)
    kept = [v for _, v in repeats if v is not None]
    return {
        "table": table, "proxy_scores": f"{table}.proxies.json", "objective": f"AP at {fidelity}",
        "genomes": len(entries), "split_seed": seed,
        "split": {"A": [e.fingerprint for e in a], "B": [e.fingerprint for e in b]},
        "rule": "largest Kendall tau-b with trained AP on the choice half, over every model proxy, the ensemble "
                "(ranked within the half), params and multiply_adds, each either way round",
        "fixed_split": folds,
        "repeated_2fold": {"splits": splits, "folds": len(repeats),
                           "chosen_count": {n: len(v) for n, v in sorted(picked.items(), key=lambda kv: -len(kv[1]))},
                           "held_out_tau_of_chosen": {"mean": round(statistics.fmean(kept), 4),
                                                      "sd": round(statistics.stdev(kept), 4),
                                                      "median": round(statistics.median(kept), 4),
                                                      "share_positive": round(sum(v > 0 for v in kept) / len(kept), 4)},
                           "held_out_tau_by_chosen": {n: round(statistics.fmean([v for v in vs if v is not None]), 4)
                                                      for n, vs in picked.items()},
                           # Every candidate on every held-out half, chosen or not: what a fixed default keeps.
                           "held_out_tau_of_each": {n: {"mean": round(statistics.fmean(vs), 4),
                                                        "sd": round(statistics.stdev(vs), 4),
                                                        "share_positive": round(sum(v > 0 for v in vs) / len(vs), 4)}
                                                    for n, vs in sorted(each.items(),
                                                                        key=lambda kv: -statistics.fmean(kv[1]))}},
    }


def format_result(result: dict) -> str:
    """A few lines: each fold's choice, its tau on the choice half and on the held-out half; the CV summary."""
    lines = [f"{result['genomes']} genomes, {result['objective']}; split seed {result['split_seed']}"]
    for fold in result["fixed_split"]:
        best = fold["chosen"]
        fit = fold["choice_half_taus"][best]
        held = ", ".join(f"{f} {_t(v)} (n {v['n']}, p {_p(v)})" for f, v in fold["held_out"].items())
        lines.append(f"  {fold['fold']}: chose {best} (tau {_t(fit)} on the choice half); held out: {held}")
        ranked = sorted(fold["held_out_all"].items(), key=lambda kv: -(kv[1]["tau"] or -9))[:6]
        lines.append("    best on the held-out half: " + ", ".join(f"{n} {_t(v)}" for n, v in ranked))
    cv = result["repeated_2fold"]
    summary = cv["held_out_tau_of_chosen"]
    lines.append(f"  repeated 2-fold ({cv['splits']} splits, {cv['folds']} folds): chosen {cv['chosen_count']}; "
                 f"held-out tau of the chosen {summary['mean']:+.3f} ± {summary['sd']:.3f} "
                 f"(median {summary['median']:+.3f}, positive in {summary['share_positive']:.0%})")
    best = list(cv["held_out_tau_of_each"].items())[:6]
    lines.append("  every candidate on the held-out halves (mean ± sd, share positive): " + ", ".join(
        f"{n} {v['mean']:+.3f} ± {v['sd']:.3f} ({v['share_positive']:.0%})" for n, v in best))
    return "\n".join(lines)


def _t(value) -> str:
    return f"{value['tau']:+.3f}" if value["tau"] is not None else "-"


def _p(value) -> str:
    return f"{value['p']:.3f}" if value["p"] is not None else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", default=TABLE, help=f"a recorded fidelity table (default {TABLE})")
    parser.add_argument("--score", action="store_true", help="(re)compute the table's proxy scores first")
    parser.add_argument("--limit", type=int, help="--score at most this many genomes this run")
    parser.add_argument("--experiment", default="experiments/proxy_shapes.yaml",
                        help="model and task settings the proxies build (default: the proxy task)")
    parser.add_argument("--fidelity", default="proxy", help="the fidelity whose AP the choice uses (default proxy)")
    parser.add_argument("--seed", type=int, default=0, help="proxy seed and split seed (default 0)")
    parser.add_argument("--splits", type=int, default=200, help="repeated random 2-fold splits (default 200)")
    parser.add_argument("--json", default=OUT, help=f"where the result goes (default {OUT})")
    args = parser.parse_args()
    if args.score:
        score(args.table, args.experiment, args.seed, args.limit)
        if os.path.exists(f"{args.table}.proxies.json.partial"):
            return  # scores incomplete: nothing to choose on yet
    result = holdout(args.table, args.fidelity, args.seed, args.splits)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    print(format_result(result))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
