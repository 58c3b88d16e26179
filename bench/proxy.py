"""Benchmark the default proxy trial as a search runs it, optionally against another git revision.

Run from the repository root: ``python bench/proxy.py [--baseline 1e9f694] [--repeat 2] [--warm] [--workers 2]
[--set k=v ...]``.

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

With ``--workers N`` (or ``--baseline REF@N``), a tree runs N such trials side
by side, as N local search workers do: on a tree whose workers split the
cores (``nas.workers.thread_settings``) each gets its share, as there; older
trees' workers did not, so theirs run unpinned. Its trials per hour are then
N trials per the slowest one's wall time, and its matmul share counts the
images/s of all N. The N trials start together, where a search's workers
drift apart; N a divisor of the cores gives every trial the same share.

Each tree runs with the kernels its own commands choose: from bf65c52 on,
oneDNN on every x86-64 CPU (``nas.cpu.onednn_settings``); before, what
TensorFlow chose (off on CPUs without AVX-512 VNNI/BF16, AVX-VNNI or AMX).
With ``--json FILE`` every group of trials is written as it ends, and the
same command, cut short, resumes from the file.

Targets (issue 12): 2x trials per hour against 1e9f694 with AP within its
seed-to-seed spread (AP 0.405-0.436, AP50 0.526-0.556); training at 0.8 or more
of the matmul rate; overhead (spawn, import, tracing, evaluation) under 10% of
the trial.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

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
    """Best of three 10-matmul runs of 2048x2048 float32 (TensorFlow, all cores), in GFLOP/s.

    Measured with TensorFlow's own kernels and with oneDNN, and the faster
    counts (on an AVX2-only CPU, where TensorFlow leaves oneDNN off, oneDNN's
    matmul ran at 151-153 against 108-128 GFLOP/s): the rate is what the
    machine can do, whichever kernels a tree trains with.
    """
    rates = []
    for onednn in ("0", "1"):
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn)
        out = subprocess.run([sys.executable, "-c", _MATMUL], capture_output=True, text=True, check=True, env=env)
        rates.append(float(out.stdout.strip().splitlines()[-1]))
    return max(rates)


# ---------------------------------------------------------------- one trial in the measured tree
# The warm-up trial of --warm: another genome on a few images of another generated set, one epoch.
WARM_UP = ["task.data.generate_shapes={train: 32, val: 8, seed: 1}", "task.training.epochs=1"]


def measure(config_path: str, overrides: list[str], warm: bool = False, workers: int = 1,
            prepare_only: bool = False) -> dict:
    """One proxy trial in the current tree (the working directory), as the search runs it.

    With ``warm`` (and a tree that has warm trial processes), the measured
    trial is the second of three in its process, after a short trial of
    ``r50-like``: what a search's trials pay between the first and the last
    of each ``search.trials_per_process``.
    """
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:  # as this tree's commands would run (before its trial process starts TensorFlow)
        try:
            from nas.cpu import onednn_settings, use_settings
        except ImportError:  # bf65c52 to this commit kept them in nas.workers
            from nas.workers import onednn_settings, use_settings

        use_settings(onednn_settings())
    except ImportError:
        pass  # a tree before bf65c52: TensorFlow's own choice of kernels
    if workers > 1:
        try:  # as this tree's search workers would run (set before its trial process starts TensorFlow)
            from nas.workers import thread_settings, usable_cores, use_settings

            use_settings(thread_settings(workers, usable_cores()))
        except ImportError:
            pass  # a tree before 2026-11-23: its workers left TensorFlow's threads at all cores
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
    if prepare_only:  # before trials side by side, so they do not both write the data and its cache
        if warm:
            prepare(load_train_config(config_path, overrides + WARM_UP))
        return {"prepare": prepared}
    data = to_data(config)
    out_dir = tempfile.mkdtemp(prefix="proxy-bench-")
    process = None
    try:
        try:
            from nas.search.child import TrialProcess
        except ImportError:  # 1e9f694: one fresh process per trial
            from nas.search.child import train_in_child

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
            "warm": warm, "load": load(), "threads": os.environ.get("TF_NUM_INTRAOP_THREADS", "all"),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}


# ---------------------------------------------------------------- the driver (this tree's code)
def run_tree(tree: str, config_path: str, overrides: list[str], warm: bool = False, workers: int = 1) -> list[dict]:
    """:func:`measure` in ``workers`` subprocesses side by side, each with ``tree`` as working directory and first on
    the import path; one record per trial."""
    env = dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, os.path.abspath(__file__), "--measure", "--config", config_path,
               "--workers", str(workers)]
    if warm:
        command.append("--warm")
    for item in overrides:
        command += ["--set", item]
    if workers > 1:
        prepared = subprocess.run(command + ["--prepare-only"], cwd=tree, env=env, capture_output=True, text=True)
        if prepared.returncode != 0:
            raise SystemExit(f"preparing the data in {tree} failed:\n{prepared.stderr[-3000:]}")
    processes = [subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(workers)]
    outputs = [p.communicate() for p in processes]
    results = []
    for process, (stdout, stderr) in zip(processes, outputs):
        if process.returncode != 0:
            raise SystemExit(f"measuring {tree} failed:\n{stderr[-3000:]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    matmul, after = matmul_gflops(), load()
    for result in results:
        result.update(matmul_gflops=matmul, load_after=after, workers=workers,
                      group_wall=max(r["wall"] for r in results),
                      group_images_per_s=sum(r["images_per_s"] for r in results))
    return results


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


ONEDNN_SAYS = {"0": "off", "1": "on", "default": "as TensorFlow chooses"}


def describe(name: str, runs: list[dict], flop_per_image: float) -> dict:
    """Print one tree's runs; return its medians."""
    print(f"\n== {name}")
    summary = {}
    for i, r in enumerate(runs, 1):
        t = r["timing"]
        workers = r.get("workers", 1)
        # Side by side, the machine's throughput is all the trials' images/s, and N trials end with the slowest.
        gflops = r.get("group_images_per_s", r["images_per_s"]) * flop_per_image
        overhead = t["spawn"] + sum(t.get(k, 0) for k in ("trace", "evaluate", "data", "build", "iterator", "other"))
        r.update(gflops=gflops, matmul_fraction=gflops / r["matmul_gflops"], overhead=overhead / r["wall"],
                 trials_per_hour=workers * 3600 / r.get("group_wall", r["wall"]))
        side_by_side = f", one of {workers} side by side ({r.get('threads', 'all')} thread(s) each)" if workers > 1 else ""
        print(f"run {i} (load {r['load']} -> {r['load_after']}): wall {r['wall']:.1f} s{side_by_side}, "
              f"{r['trials_per_hour']:.1f} trials/h, AP {r['AP']:.3f} AP50 {r['AP50']:.3f}, "
              f"{r['precision']}, batch {r['batch_size']}, {r['steps']} steps, "
              f"oneDNN {ONEDNN_SAYS.get(r.get('onednn', 'default'), r.get('onednn'))}")
        print(f"  data preparation outside the trial (once per study): {r['prepare']:.1f} s")
        parts = {"hand-over (warm process)" if r.get("warm") else "spawn+import": t["spawn"],
                 **{k: v for k, v in t.items() if k != "spawn"}}
        print("  " + ", ".join(f"{k} {v:.1f} s ({v / r['wall']:.0%})" for k, v in parts.items()))
        print(f"  training {r['images_per_s']:.1f} images/s" + (f" ({r['group_images_per_s']:.1f} in all)"
                                                                 if workers > 1 else "") + f" = {gflops:.1f} GFLOP/s = "
              f"{r['matmul_fraction']:.2f} of the matmul rate ({r['matmul_gflops']:.1f} GFLOP/s); "
              f"input wait {t['input'] / max(t['train'], 1e-9):.1%} of training; "
              f"overhead (spawn, import, data, build, tracing, evaluation, unmeasured) {r['overhead']:.1%} "
              "of the trial")
    for r in runs:
        r.setdefault("group_images_per_s", r["images_per_s"])  # records of one trial at a time
    for key in ("wall", "trials_per_hour", "AP", "AP50", "images_per_s", "group_images_per_s", "gflops",
                "matmul_fraction", "overhead"):
        summary[key] = statistics.median(r[key] for r in runs)
    summary["trace"] = statistics.median(r["timing"]["trace"] for r in runs)
    return summary


def write_runs(path: str, runs: dict, revisions: dict, complete: bool) -> None:
    """Write the runs so far (atomically: a run cut short leaves the last whole file)."""
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump({"runs": runs, "revisions": revisions, "complete": complete}, handle, indent=2)
    os.replace(path + ".tmp", path)


def already_measured(runs: list, repeat: int, workers: int) -> bool:
    """Whether group ``repeat`` (from 0) of a tree measured ``workers`` trials at a time is in its ``runs``."""
    return len(runs) >= (repeat + 1) * workers


def resumed_runs(path: Optional[str], revisions: dict, trees: dict) -> dict[str, list]:
    """The runs an earlier, unfinished run of the same measurement wrote to ``path`` (else none)."""
    runs: dict[str, list] = {name: [] for name in trees}
    if not path or not os.path.exists(path):
        return runs
    with open(path, encoding="utf-8") as handle:
        earlier = json.load(handle)
    if revisions["this tree"].endswith("+changes"):
        raise SystemExit(f"--json {path}: this tree has uncommitted changes, so its earlier runs may be of other "
                         "code; commit them, or name a new file")
    if earlier.get("complete", True):
        raise SystemExit(f"--json {path}: holds a finished measurement; name a new file")
    if earlier["revisions"] != revisions or set(earlier["runs"]) != set(runs):
        raise SystemExit(f"--json {path}: an unfinished measurement of other revisions or settings "
                         f"({earlier['revisions']}); name a new file")
    print(f"resuming from {path}: " + ", ".join(f"{name} {len(r)} trial(s)" for name, r in earlier["runs"].items()))
    return earlier["runs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/proxy_shapes.yaml",
                        help="relative to each tree (the baseline reads its own copy)")
    parser.add_argument("--set", action="append", default=[], help="override for this tree's config")
    parser.add_argument("--baseline", metavar="REF[@N]", action="append", default=[],
                        help="git revision to measure in the same run (repeatable); @N: N trials side by side")
    parser.add_argument("--baseline-set", action="append", default=[], help="override for the baseline's config")
    parser.add_argument("--repeat", type=int, default=1, help="trials per tree (alternating)")
    parser.add_argument("--warm", action="store_true",
                        help="measure the second trial of a warm trial process (trees without one run cold)")
    parser.add_argument("--workers", type=int, default=1, help="this tree's trials side by side, as N search workers")
    parser.add_argument("--json", metavar="FILE",
                        help="write every run here as it ends; a run of the same command that was cut short "
                             "resumes from the file")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers: expected a positive integer")
    if args.measure:
        print(json.dumps(measure(args.config, args.set, args.warm, args.workers, args.prepare_only)))
        return

    flop_per_image = training_gflop_per_image(args.config, args.set)
    print(f"load {load()}; {os.cpu_count()} cores; SpineNet-49 proxy trial, "
          f"{flop_per_image:.3f} GFLOP per training image (analytic, forward + backward)")
    # Resolved before measuring: a commit made during a long run must not be recorded as the one measured.
    revisions = {"this tree": revision(HERE), "config": args.config, "host": platform.node(), "settings": args.set,
                 "warm": args.warm, "workers": args.workers,
                 "baseline_settings": args.baseline_set, "baselines": []}
    trees = {}  # name -> (folder, overrides, workers), measured in this order, alternating
    try:
        for spec in dict.fromkeys(args.baseline):  # each revision once
            ref, _, count = spec.partition("@")
            if count and not (count.isdigit() and int(count) >= 1):
                raise SystemExit(f"--baseline {spec}: expected REF or REF@N with N a positive integer")
            resolved = subprocess.run(["git", "rev-parse", "--short", ref], cwd=HERE, capture_output=True,
                                      text=True, check=True).stdout.strip()
            revisions["baselines"].append(resolved + (f"@{count}" if count else ""))
            folder = tempfile.mkdtemp(prefix="spinenas-baseline-")
            # removed in `finally`, even if the add fails
            trees[f"baseline {spec}"] = (folder, args.baseline_set, int(count or 1))
            subprocess.run(["git", "worktree", "add", "--detach", "--force", folder, ref],
                           cwd=HERE, check=True, capture_output=True)
        trees["this tree"] = (HERE, args.set, args.workers)
        runs = resumed_runs(args.json, revisions, trees)
        for repeat in range(args.repeat):
            for name, (folder, overrides, workers) in trees.items():
                if already_measured(runs[name], repeat, workers):
                    continue  # before the command was cut short
                runs[name] += run_tree(folder, args.config, overrides, args.warm, workers)
                if args.json:
                    write_runs(args.json, runs, revisions, complete=False)
    finally:
        for name, (folder, _, _) in trees.items():
            if folder != HERE:
                subprocess.run(["git", "worktree", "remove", "--force", folder], cwd=HERE, capture_output=True)
                shutil.rmtree(folder, ignore_errors=True)
    summaries = {name: describe(name, r, flop_per_image) for name, r in runs.items() if r}
    if args.json:
        write_runs(args.json, runs, revisions, complete=True)
    new = summaries["this tree"]
    print(f"\nthis tree: {new['trials_per_hour']:.1f} trials/h (target: 2x 1e9f694), training at "
          f"{new['matmul_fraction']:.2f} of the matmul rate (target 0.8), overhead {new['overhead']:.1%} "
          "(target under 10%)")
    for ref in dict.fromkeys(args.baseline):
        old = summaries[f"baseline {ref}"]
        # Side by side, images/s is all the trials' together (one trial's figure is in its line above).
        speedup = new["trials_per_hour"] / old["trials_per_hour"]
        print(f"same-run ratios against {ref} (medians): trials/h x{speedup:.2f}, "
              f"training images/s x{new['group_images_per_s'] / old['group_images_per_s']:.2f}, "
              f"tracing {old['trace']:.1f} -> {new['trace']:.1f} s; "
              f"AP {old['AP']:.3f} -> {new['AP']:.3f}, AP50 {old['AP50']:.3f} -> {new['AP50']:.3f}")


if __name__ == "__main__":
    main()
