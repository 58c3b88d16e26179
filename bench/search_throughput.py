"""Distinct genomes trained per hour by a real search, with one worker and with several, optionally on other trees.

Run from the repository root::

    python bench/search_throughput.py [--experiment experiments/quickstart.yaml] [--workers 1 --workers 2]
        [--baseline REV] [--json bench/results/search_throughput.json]

Each run is ``spinenas search EXPERIMENT --workers N`` in a fresh working
folder (its own study, runs and generated data), from the tree being measured (a ``git worktree`` of ``REV`` for a
baseline), timed end to end, data generation included. A run counts its
complete trials, the genomes it trained (complete trials that did not reuse
another's result), the distinct ones among them, and the genomes trained more
than once: throughput is distinct genomes trained per hour. Every run is
written to ``--json`` as it ends, and the same command resumes from the file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree(revision: str | None, scratch: str) -> str:
    if revision is None:
        return HERE
    path = os.path.join(scratch, f"tree-{revision}")
    if not os.path.isdir(path):
        subprocess.run(["git", "-C", HERE, "worktree", "add", "--detach", "-f", path, revision], check=True,
                       capture_output=True)
    return path


def _count(tree: str, run_dir: str, name: str) -> dict:
    script = f"""
import collections, json, optuna
study = optuna.load_study(study_name={name!r}, storage="sqlite:///{run_dir}/study.db")
done = [t for t in study.trials if t.state.name == "COMPLETE"]
trained = [t.user_attrs["fingerprint"] for t in done if "duplicate_of" not in t.user_attrs]
counts = collections.Counter(trained)
print(json.dumps({{"complete": len(done), "trained": len(trained), "distinct_trained": len(counts),
                  "trained_twice": sorted(fp for fp, n in counts.items() if n > 1),
                  "reused": len(done) - len(trained),
                  "values": [t.value for t in done]}}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=tree, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": tree})
    return json.loads(out.stdout)


def measure(tree: str, label: str, experiment: str, workers: int, scratch: str) -> dict:
    """One search run from ``tree`` with ``workers`` workers, and its counts."""
    import yaml

    with open(os.path.join(tree, experiment), encoding="utf-8") as handle:
        name = yaml.safe_load(handle)["name"]
    work = tempfile.mkdtemp(prefix=f"w{workers}-", dir=scratch)
    command = [sys.executable, "-m", "nas.cli", "search", os.path.join(tree, experiment), "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": tree}
    started = time.perf_counter()
    with open(os.path.join(work, "search.log"), "w", encoding="utf-8") as log:
        code = subprocess.run(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    run_dir = os.path.join(work, "runs", name)
    row = {"tree": label, "workers": workers, "exit": code, "wall_s": round(wall, 1), "log": log.name,
           **_count(tree, run_dir, name)}
    row["distinct_per_hour"] = round(row["distinct_trained"] * 3600 / wall, 2)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/quickstart.yaml")
    parser.add_argument("--workers", type=int, action="append", help="worker counts to run (default 1 and 2)")
    parser.add_argument("--baseline", action="append", default=[], help="another git revision, run with the most "
                        "workers only (repeatable)")
    parser.add_argument("--json", help="write every run here as it ends; resume from it")
    args = parser.parse_args(argv)
    workers = args.workers or [1, 2]
    record = {"experiment": args.experiment, "host": platform.node(), "cpus": os.cpu_count(), "runs": []}
    if args.json and os.path.exists(args.json):
        with open(args.json, encoding="utf-8") as handle:
            record = json.load(handle)
    head = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    plan = [(None, f"this tree ({head})", n) for n in workers] + [(rev, rev, max(workers)) for rev in args.baseline]
    scratch = tempfile.mkdtemp(prefix="search-throughput-")
    for revision, label, n in plan:
        if any(r["tree"] == label and r["workers"] == n for r in record["runs"]):
            continue
        print(f"{label}: {n} worker(s) ...", flush=True)
        row = measure(_tree(revision, scratch), label, args.experiment, n, scratch)
        print(json.dumps(row), flush=True)
        record["runs"].append(row)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=1)
    runs = {(r["tree"], r["workers"]): r for r in record["runs"]}
    mine = [r for (tree, _), r in sorted(runs.items()) if tree.startswith("this tree")]
    if len(mine) >= 2:
        print(f"distinct genomes per hour, {mine[-1]['workers']} workers against {mine[0]['workers']}: "
              f"x{mine[-1]['distinct_per_hour'] / mine[0]['distinct_per_hour']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
