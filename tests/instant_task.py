"""A detection task whose training takes a set time and trains nothing: ``task.name: tests.instant_task:instant``.

For the tests of what happens around training in other processes (workers
killed mid-trial, a SIGKILLed search resumed, a database restarted under
workers): they need trials that run for a while in real worker and training
processes, not a trained model, and TensorFlow's start-up in each of those
processes would cost them most of their time. It is also the end-to-end test
of naming a task of one's own as ``package.module:name``. Real training runs
in every search of ``tests/conftest.py``'s ``tiny_study`` and in the tests
of each task.
"""

from __future__ import annotations

import hashlib
import os
import time

from nas.tasks.detection import DetectionTask
from nas.tasks.registry import register_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "tests.instant_task:instant"
# Seconds one epoch takes: long enough for a test to see the trial RUNNING and kill its process.
EPOCH_SECONDS = float(os.environ.get("INSTANT_TASK_EPOCH_SECONDS", "1.5"))


class InstantDetection(DetectionTask):
    """Detection's schema, data and cost model; an AP drawn from the genome's fingerprint after a pause."""

    name = "instant"

    def train_and_evaluate(self, genome, train_config, report=None, *, out_dir=None, progress=False):
        started = time.perf_counter()
        digest = hashlib.sha256(f"{genome.fingerprint}/{train_config.task.training.seed}".encode()).digest()
        epochs = train_config.task.training.epochs
        ap = (0.2 + 0.6 * digest[0] / 255) * epochs / (epochs + 1)  # longer training, higher AP
        history = []
        for epoch in range(1, epochs + 1):
            time.sleep(EPOCH_SECONDS)
            metrics = {"AP": ap * epoch / epochs}
            history.append({"epoch": epoch, **metrics})
            if report is not None:
                report(epoch, metrics)
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
        total = time.perf_counter() - started
        return {"AP": ap, "AP50": ap, "AP75": ap, "APs": 0.0, "APm": 0.0, "APl": 0.0, "loss": 1.0 - ap,
                "timing": {"total": total, "train": total}, "history": history}


register_task(InstantDetection())


def instant_env(**extra) -> dict:
    """The environment for a ``spinenas`` process started by a test that can import this module (and its workers)."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    return env
