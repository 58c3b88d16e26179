"""One training run of a trial: a genome trained in the warm child process, its outcome recorded on the trial.

The search's objective and the fidelity worker (and so anything that queues
runs through the fidelity machinery) train through :func:`train_trial`, so
their trials carry the same attributes: ``fail_reason`` and ``error_log`` when
training fails; ``precision`` (:mod:`nas.search.precision`), ``wall_time_s``,
``process_overhead_s`` and ``metrics`` when it succeeds. Deciding what the
outcome means (a value to return or tell, a retry) is the caller's.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import time
from typing import Callable, Optional

from nas.config import to_data
from nas.cpu import onednn_setting
from nas.search.child import ERROR_LOG, TrialProcess
from nas.search.precision import record_precision
from nas.search.storage import with_retries
from nas.trials import TrialFailed


def train_trial(process: TrialProcess, trial, genome, settings, seed: int, out_dir: str, *,
                report: Optional[Callable[[int, dict], bool]] = None, curves: bool = False,
                attrs: Optional[dict] = None, storage_url: str = "",
                log: Callable[[str], None] = print) -> tuple[dict, float]:
    """Train ``genome`` with the train config ``settings`` and training seed ``seed``: the metrics and wall seconds.

    ``settings`` is a train config (dataclass or plain data; it is copied).
    With ``curves`` the per-epoch ``history`` and the ``timing`` breakdown
    are recorded as attributes of their own (they never go in ``metrics``),
    and ``attrs`` are recorded with the result. ``report`` is passed on to the
    child (intermediate values for a pruner). Raises :class:`TrialFailed`
    (the trial's ``fail_reason`` and, when the child wrote one, ``error_log``
    recorded) and :class:`~nas.search.precision.PrecisionMismatch`.
    """
    config = to_data(settings)
    config["task"]["training"]["seed"] = seed
    started = time.perf_counter()
    try:
        metrics = process.run(genome, config, out_dir, report)
    except TrialFailed as err:
        trial.set_user_attr("fail_reason", str(err))
        error_log = os.path.join(out_dir, ERROR_LOG)
        if os.path.exists(error_log):
            trial.set_user_attr("error_log", error_log)
        raise
    wall = time.perf_counter() - started
    # Only the training process knows what precision auto meant; a study holds one (nas.search.precision).
    record_precision(trial.study, trial, config["task"]["training"]["precision"], metrics.get("precision"))

    def record_result():
        trial.set_user_attr("wall_time_s", wall)
        total = metrics.get("timing", {}).get("total")
        if total is not None:  # the time outside training itself: process start, imports, building
            trial.set_user_attr("process_overhead_s", max(0.0, wall - total))
        trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if k not in ("history", "timing")})
        if curves:
            trial.set_user_attr("history", metrics.get("history", []))
            trial.set_user_attr("timing", metrics.get("timing", {}))
        for key, value in (attrs or {}).items():
            trial.set_user_attr(key, value)

    # The genome is trained: its result waits out a database restart rather than being thrown away
    # (the trial cut off, queued again and trained a second time).
    with_retries(record_result, storage_url, log)
    return metrics, wall


def package_versions() -> dict:
    """Versions that decide what a trial's numbers mean."""
    versions = {"python": platform.python_version()}
    for package in ("spinenas", "tensorflow", "tf-keras", "optuna"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def machine() -> dict:
    """Where a trial ran: host, platform, processor, core count and oneDNN (None: TensorFlow's own choice)."""
    return {"host": socket.gethostname(), "platform": platform.platform(), "processor": platform.processor(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "onednn": onednn_setting()}
