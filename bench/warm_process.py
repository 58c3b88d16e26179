"""Benchmark: resident memory of one warm training process over many tiny trials.

Run by hand: ``python bench/warm_process.py [--trials 20]``. Prints the child's
resident memory after each trial and the growth since trial 2 (TensorFlow,
the data and one model are loaded by then). ``search.trials_per_process`` and
``search.max_process_memory_growth_mb`` bound what a search lets it grow.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from nas.cpu import onednn_settings, use_settings  # noqa: E402  (before TensorFlow loads, as trials do)

use_settings(onednn_settings())

from nas.config import to_data  # noqa: E402
from nas.experiment import load_train_config  # noqa: E402
from nas.search.child import TrialProcess, resident_mb  # noqa: E402
from spinenet.specs import resolve_genome  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="tiny trials in one process (default 20)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="spinenas-warm-")
    genome = resolve_genome(os.path.join(os.path.dirname(__file__), "..", "tests", "data", "study_1e9f694",
                                         "seed.yaml"))
    config = to_data(load_train_config(None, [
        "task.data.image_size=64", f"task.data.root={folder}/shapes64",
        "task.data.generate_shapes={train: 16, val: 8, seed: 0}", "task.training.epochs=1",
        "task.training.batch_size=16", "task.head.num_filters=8", "task.head.num_convs=1",
        "model.endpoints_num_filters=8", "task.evaluation.batch_size=8"]))
    baseline = None
    with TrialProcess(trials_per_process=args.trials + 1) as process:
        for trial in range(1, args.trials + 1):
            process.run(genome, config, os.path.join(folder, f"t{trial}"))
            resident = resident_mb(process.pid)
            baseline = resident if trial == 2 else baseline
            growth = f"{resident - baseline:+7.1f} MB since trial 2" if baseline is not None else ""
            print(f"trial {trial:3d}: {resident:8.1f} MB resident  {growth}", flush=True)


if __name__ == "__main__":
    main()
