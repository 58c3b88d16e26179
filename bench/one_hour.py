"""Run ``experiments/one_hour.yaml`` as shipped and record what it found, with the machine's load alongside.

    python bench/one_hour.py [--experiment experiments/one_hour.yaml] [--out bench/results/one_hour]

It runs ``spinenas search`` (screening, the time split and the confirmation
included) in a subprocess, keeps its output in ``<out>.log``, samples the
load average every 30 s, and writes ``<out>.json``: trials trained, screened
and over budget, the time split the search printed, the wall time of each
stage, the verdict and the winner against the seed. Killed, run it again:
the study resumes and the record is rewritten from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=os.path.join(ROOT, "experiments", "one_hour.yaml"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "one_hour"))
    args = parser.parse_args()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    loads, done = [], threading.Event()

    def sample_load() -> None:
        while not done.wait(30):
            with open("/proc/loadavg", encoding="ascii") as handle:
                loads.append(float(handle.read().split()[0]))

    threading.Thread(target=sample_load, daemon=True).start()
    started = time.monotonic()
    lines = []
    with open(args.out + ".log", "a", encoding="utf-8") as log:
        process = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", args.experiment], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            if "img/s" in line:  # progress bars
                continue
            log.write(line)
            log.flush()
            lines.append(line.rstrip("\n"))
        code = process.wait()
    done.set()
    record = {"experiment": os.path.relpath(args.experiment, ROOT), "exit_status": code,
              "wall_s": round(time.monotonic() - started, 1), "machine": _machine(),
              "load_average_1min": {"samples": len(loads), "median": sorted(loads)[len(loads) // 2] if loads else None,
                                    "max": max(loads) if loads else None},
              "time_split": [line for line in lines if line.startswith("time budget") or "time budget" in line[:40]],
              "stopped": [line for line in lines if "stopping" in line],
              "time": [line for line in lines if line.startswith("time: search")],
              **_study_record(args.experiment)}
    with open(args.out + ".json", "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    print(f"wrote {args.out}.json")
    return code


def _machine() -> dict:
    return {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}


def _study_record(path: str) -> dict:
    """What the study and its confirmation hold: counts, the verdict, the winner against each seed."""
    sys.path.insert(0, ROOT)
    from nas.confirm import VERDICT_KEY, confirmation_study
    from nas.experiment import load_experiment
    from nas.search.study import load_study

    experiment = load_experiment(path)
    study = load_study(experiment.storage_url, experiment.study_name)
    trials = study.get_trials(deepcopy=False)
    record = {"trials": {
        "total": len(trials),
        "trained": sum(1 for t in trials if "wall_time_s" in t.user_attrs),
        "complete": sum(1 for t in trials if t.state.name == "COMPLETE"),
        "duplicates": sum(1 for t in trials if "duplicate_of" in t.user_attrs),
        "over_budget": sum(1 for t in trials if t.user_attrs.get("infeasible")),
        "failed": sum(1 for t in trials if t.state.name == "FAIL"),
        "prescreened": sum(1 for t in trials if "prescreen_rank" in t.user_attrs),
        "median_trial_s": _median([t.user_attrs["wall_time_s"] for t in trials if "wall_time_s" in t.user_attrs]),
    }}
    try:
        verdict = confirmation_study(experiment).user_attrs.get(VERDICT_KEY)
    except Exception as err:  # no confirmation yet: the record says so
        verdict = None
        record["confirmation_error"] = str(err)
    record["verdict"] = verdict
    if verdict:
        record["summary"] = [{"seed": block["seed"], "winner": block["winner"],
                              "candidates": [{"fingerprint": row["fingerprint"], "search_trial": row["search_trial"],
                                              "comparison": row["comparison"], "p_holm": row["p_holm"],
                                              "beats_seed": row["beats_seed"],
                                              "multiply_adds_ratio": row["multiply_adds_ratio"]}
                                             for row in block["candidates"]]} for block in verdict["seeds"]]
    return record


def _median(values: list) -> float | None:
    values = sorted(values)
    return round(values[len(values) // 2], 1) if values else None


if __name__ == "__main__":
    sys.exit(main())
