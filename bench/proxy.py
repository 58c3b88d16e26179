"""Benchmark the default proxy trial as a search runs it, optionally against another git revision.

Run from the repository root: ``python bench/proxy.py [--baseline 1e9f694] [--repeat 2] [--warm] [--set k=v ...]``.

Each measurement is a subprocess whose working directory (and first import
path) is the tree being measured, so old code is measured with old code. It
prepares the data outside the clock (once per study in a search), then trains
SpineNet-49 in a spawned trial process (``TrialProcess``; ``train_in_child`` on
older trees), spawn and TensorFlow import included; with ``--warm``, as the
second trial of a warm process (trees with one), which is what most trials of
a search pay (``search.trials_per_process``, 8 by default). A 2048x2048 float32 matmul
is timed before and after each trial, so throughput is a fraction of what the
machine delivers at that moment. With ``--baseline`` (repeatable) the trees
alternate and every speed-up is a same-run ratio.

Targets (issue 12): 2x trials per hour against 1e9f694 with AP within its
seed-to-seed spread (AP 0.405-0.436, AP50 0.526-0.556); training at 0.8 or more
of the matmul rate; overhead (spawn, import, tracing, evaluation) under 10% of
the trial.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MATMUL = """
import os, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
a = tf.random.uniform([2048, 2048]); b = tf.random.uniform([2048, 2048])
tf.matmul(a, b).numpy()
best = 0.0
for _ in range(3):
    start = time.perf_counter()
    for _ in range(10):
        c = tf.matmul(a, b)
    c.numpy()
    best = max(best, 10 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
print(best)
"""


def load() -> str:
    """The 1, 5 and 15-minute load averages."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def revision(tree: str) -> str:
    """The commit checked out in ``tree``, with ``+changes`` when its tracked files differ from it."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=tree).returncode != 0
    return commit.stdout.strip() + ("+changes" if dirty else "")


def matmul_gflops() -> float:
    """Best of three 10-matmul runs of 2048x2048 float32 (TensorFlow, all cores), in GFLOP/s."""
    out = subprocess.run([sys.executable, "-c", _MATMUL], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- one trial in the measured tree
# The warm-up trial of --warm: another genome on a few images of another generated set, one epoch.
WARM_UP = ["task.data.generate_shapes={train: 32, val: 8, seed: 1}", "task.training.epochs=1"]


def measure(config_path: str, overrides: list[str], warm: bool = False) -> dict:
    """One proxy trial in the current tree (the working directory), as the search runs it.

    With ``warm`` (and a tree that has warm trial processes), the measured
    trial is the second of three in its process, after a short trial of
    ``r50-like``: what a search's trials pay between the first and the last
    of each ``search.trials_per_process``.
    """
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from nas.config import to_data
    from nas.experiment import load_train_config
    from spinenet import SPINENET_49

    def prepare(config):
        try:  # the task seam (after 1e9f694): its prepare_data also builds the image cache
            from nas.tasks import get_task

            get_task(config.task.name).prepare_data(config.task)
        except ImportError:
            from nas.tasks.detection.dataset import prepare_data

            prepare_data(config.task.data)

    config = load_train_config(config_path, overrides)
    started = time.perf_counter()
    prepare(config)
    prepared = time.perf_counter() - started
    data = to_data(config)
    out_dir = tempfile.mkdtemp(prefix="proxy-bench-")
    process = None
    try:
        try:
            from nas.search.child import TrialProcess
        except ImportError:  # 1e9f694: one fresh process per trial
            from nas.search import train_in_child

            def run():
                return train_in_child(SPINENET_49, data, out_dir)
            warm = False  # that tree started a process per trial: every trial was cold
        else:
            # Cold: the process starts and ends with the trial, as with trials_per_process 1. Warm: the
            # measured trial is neither the process's first nor its last, so neither start nor exit is timed.
            process = TrialProcess(trials_per_process=3 if warm else 1)
            if warm:
                from spinenet.specs import REFERENCE_GENOMES

                warm_up = load_train_config(config_path, overrides + WARM_UP)
                prepare(warm_up)
                process.run(REFERENCE_GENOMES["r50-like"], to_data(warm_up), os.path.join(out_dir, "warm-up"))

            def run():
                return process.run(SPINENET_49, data, out_dir)
        start = time.perf_counter()
        metrics = run()
        wall = time.perf_counter() - start
    finally:
        if process is not None:
            process.close()
        shutil.rmtree(out_dir, ignore_errors=True)
    timing = dict(metrics["timing"])
    # Cold: spawn, TensorFlow import and exit. Warm: only the hand-over (config, result, writing the outputs).
    timing["spawn"] = wall - timing.pop("total")
    return {"wall": wall, "prepare": prepared, "timing": timing, "AP": metrics["AP"], "AP50": metrics["AP50"],
            "images_per_s": metrics["train_images_per_s"], "steps": metrics["steps"],
            "batch_size": config.task.training.batch_size, "precision": metrics.get("precision", "float32"),
            "warm": warm, "load": load()}


# ---------------------------------------------------------------- the driver (this tree's code)
def run_tree(tree: str, config_path: str, overrides: list[str], warm: bool = False) -> dict:
    """:func:`measure` in a subprocess with ``tree`` as working directory and first on the import path."""
    env = dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, os.path.abspath(__file__), "--measure", "--config", config_path]
    if warm:
        command.append("--warm")
    for item in overrides:
        command += ["--set", item]
    out = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    before = result["load"]
    result["matmul_gflops"] = matmul_gflops()
    result["load_after"] = load()
    result["load"] = before
    return result


def training_gflop_per_image(config_path: str, overrides: list[str]) -> float:
    """Analytic training FLOPs per image: (backbone + head multiply-adds) x 2 FLOPs x 3 (forward, backward)."""
    sys.path.insert(0, HERE)
    from nas.experiment import load_train_config
    from nas.tasks import get_task
    from nas.tasks.base import model_cost
    from spinenet import SPINENET_49

    config = load_train_config(config_path, overrides)
    task = get_task(config.task.name)
    num_classes = task.prepare_data(config.task).num_classes
    total, _ = model_cost(task, SPINENET_49, config, num_classes)
    return total.multiply_adds * 2 * 3 / 1e9


def describe(name: str, runs: list[dict], flop_per_image: float) -> dict:
    """Print one tree's runs; return its medians."""
    print(f"\n== {name}")
    summary = {}
    for i, r in enumerate(runs, 1):
        t = r["timing"]
        gflops = r["images_per_s"] * flop_per_image
        overhead = t["spawn"] + sum(t.get(k, 0) for k in ("trace", "evaluate", "data", "build", "iterator", "other"))
        r.update(gflops=gflops, matmul_fraction=gflops / r["matmul_gflops"], overhead=overhead / r["wall"],
                 trials_per_hour=3600 / r["wall"])
        print(f"run {i} (load {r['load']} -> {r['load_after']}): wall {r['wall']:.1f} s, "
              f"{r['trials_per_hour']:.1f} trials/h, AP {r['AP']:.3f} AP50 {r['AP50']:.3f}, "
              f"{r['precision']}, batch {r['batch_size']}, {r['steps']} steps")
        print(f"  data preparation outside the trial (once per study): {r['prepare']:.1f} s")
        parts = {"hand-over (warm process)" if r.get("warm") else "spawn+import": t["spawn"],
                 **{k: v for k, v in t.items() if k != "spawn"}}
        print("  " + ", ".join(f"{k} {v:.1f} s ({v / r['wall']:.0%})" for k, v in parts.items()))
        print(f"  training {r['images_per_s']:.1f} images/s = {gflops:.1f} GFLOP/s = "
              f"{r['matmul_fraction']:.2f} of the matmul rate ({r['matmul_gflops']:.1f} GFLOP/s); "
              f"input wait {t['input'] / max(t['train'], 1e-9):.1%} of training; "
              f"overhead (spawn, import, data, build, tracing, evaluation, unmeasured) {r['overhead']:.1%} "
              "of the trial")
    for key in ("wall", "trials_per_hour", "AP", "AP50", "images_per_s", "gflops", "matmul_fraction", "overhead"):
        summary[key] = statistics.median(r[key] for r in runs)
    summary["trace"] = statistics.median(r["timing"]["trace"] for r in runs)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/proxy_shapes.yaml",
                        help="relative to each tree (the baseline reads its own copy)")
    parser.add_argument("--set", action="append", default=[], help="override for this tree's config")
    parser.add_argument("--baseline", metavar="REF", action="append", default=[],
                        help="git revision to measure in the same run (repeatable)")
    parser.add_argument("--baseline-set", action="append", default=[], help="override for the baseline's config")
    parser.add_argument("--repeat", type=int, default=1, help="trials per tree (alternating)")
    parser.add_argument("--warm", action="store_true",
                        help="measure the second trial of a warm trial process (trees without one run cold)")
    parser.add_argument("--json", metavar="FILE", help="also write every run here")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.config, args.set, args.warm)))
        return

    flop_per_image = training_gflop_per_image(args.config, args.set)
    print(f"load {load()}; {os.cpu_count()} cores; SpineNet-49 proxy trial, "
          f"{flop_per_image:.3f} GFLOP per training image (analytic, forward + backward)")
    # Resolved before measuring: a commit made during a long run must not be recorded as the one measured.
    revisions = {"this tree": revision(HERE), "settings": args.set, "warm": args.warm,
                 "baseline_settings": args.baseline_set, "baselines": []}
    trees = {}  # name -> (folder, overrides), measured in this order, alternating
    try:
        for ref in dict.fromkeys(args.baseline):  # each revision once
            resolved = subprocess.run(["git", "rev-parse", "--short", ref], cwd=HERE, capture_output=True,
                                      text=True, check=True).stdout.strip()
            revisions["baselines"].append(resolved)
            folder = tempfile.mkdtemp(prefix="spinenas-baseline-")
            trees[f"baseline {ref}"] = (folder, args.baseline_set)  # removed in `finally`, even if the add fails
            subprocess.run(["git", "worktree", "add", "--detach", "--force", folder, ref],
                           cwd=HERE, check=True, capture_output=True)
        trees["this tree"] = (HERE, args.set)
        runs: dict[str, list] = {name: [] for name in trees}
        for _ in range(args.repeat):
            for name, (folder, overrides) in trees.items():
                runs[name].append(run_tree(folder, args.config, overrides, args.warm))
    finally:
        for name, (folder, _) in trees.items():
            if folder != HERE:
                subprocess.run(["git", "worktree", "remove", "--force", folder], cwd=HERE, capture_output=True)
                shutil.rmtree(folder, ignore_errors=True)
    summaries = {name: describe(name, r, flop_per_image) for name, r in runs.items() if r}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"runs": runs, "revisions": revisions}, handle, indent=2)
    new = summaries["this tree"]
    print(f"\nthis tree: {new['trials_per_hour']:.1f} trials/h (target: 2x 1e9f694), training at "
          f"{new['matmul_fraction']:.2f} of the matmul rate (target 0.8), overhead {new['overhead']:.1%} "
          "(target under 10%)")
    for ref in dict.fromkeys(args.baseline):
        old = summaries[f"baseline {ref}"]
        speedup = new["trials_per_hour"] / old["trials_per_hour"]
        print(f"same-run ratios against {ref} (medians): trials/h x{speedup:.2f}, "
              f"training images/s x{new['images_per_s'] / old['images_per_s']:.2f}, "
              f"tracing {old['trace']:.1f} -> {new['trace']:.1f} s; "
              f"AP {old['AP']:.3f} -> {new['AP']:.3f}, AP50 {old['AP50']:.3f} -> {new['AP50']:.3f}")


if __name__ == "__main__":
    main()
