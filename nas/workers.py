"""Several workers on one study: local worker processes, GPU pinning, and joining from other machines.

Workers coordinate only through the study's storage, so local workers
(``spinenas search FILE --workers N``) and workers on other machines
(``spinenas worker FILE --storage URL --study-name NAME``) mix freely.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Optional, Sequence


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt in this process's main thread, so ``kill`` stops like Ctrl-C.

    Batch schedulers (SLURM preemption, Kubernetes, ``timeout``) send SIGTERM
    before SIGKILL; handled like Ctrl-C, the running trial is marked failed
    (queued again where the command does so) and its training process is
    stopped, instead of the trial staying RUNNING until a later worker on the
    same host notices. Only the main thread may install it.
    """
    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise KeyboardInterrupt(f"terminated by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)


def gpu_count() -> int:
    """NVIDIA GPUs on this machine (0 when there is no driver), without importing TensorFlow."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def gpu_assignments(workers: int, per_worker: Optional[int], available: int) -> list[Optional[str]]:
    """``CUDA_VISIBLE_DEVICES`` for each worker: its own ``per_worker`` GPUs, or None (no pinning)."""
    if not per_worker:
        return [None] * workers
    if available < workers * per_worker:
        return [None] * workers
    return [",".join(str(g) for g in range(i * per_worker, (i + 1) * per_worker)) for i in range(workers)]


def _worker_main(index: int, experiment_path: str, overrides: Sequence[str], storage_url: Optional[str],
                 study_name: Optional[str], n_trials: Optional[int], timeout: Optional[float],
                 cuda_devices: Optional[str]) -> None:
    from nas.search.study import hide_interrupted_trials

    interrupt_on_sigterm()
    hide_interrupted_trials()
    if cuda_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_devices  # inherited by this worker's training processes
    from nas.experiment import load_experiment
    from nas.search import SearchStopped, TrialFailed, run_search

    def log(line: str) -> None:
        print(f"[worker {index}] {line}", flush=True)

    try:
        run_search(load_experiment(experiment_path, overrides), n_trials=n_trials, timeout=timeout,
                   storage_url=storage_url, study_name=study_name, log=log, enqueue=False)
    except (TrialFailed, SearchStopped, ConnectionError, ValueError) as err:
        log(f"stopped: {err}")
        sys.exit(3)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)


def wait_for_workers(processes) -> None:
    """Wait for every worker process, reaping each as it ends (a killed one never lingers as a zombie).

    Ctrl-C (or SIGTERM) gives them a few seconds to stop on their own, terminates the rest and re-raises.
    """
    try:
        waiting = list(processes)
        while waiting:
            for ended in multiprocessing.connection.wait([p.sentinel for p in waiting]):
                process = next(p for p in waiting if p.sentinel == ended)
                process.join()
                waiting.remove(process)
    except KeyboardInterrupt:
        # The workers got the same Ctrl-C or SIGTERM and are failing their trials: give them time to
        # finish that write before forcing them (a second SIGTERM would kill them mid-write).
        deadline = time.monotonic() + 5
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        from nas.search.child import end_process

        for process in processes:
            end_process(process, grace=15)
        raise


def run_workers(experiment_path: str, overrides: Sequence[str], workers: int, *, storage_url: Optional[str] = None,
                study_name: Optional[str] = None, n_trials: Optional[int] = None, timeout: Optional[float] = None,
                gpus_per_worker: Optional[int] = None, log=print) -> list[int]:
    """Prepare the study once, run ``workers`` worker processes on it, and return their exit codes."""
    from nas.experiment import load_experiment
    from nas.search import enqueue_seeds, open_study, prepare

    experiment = load_experiment(experiment_path, overrides)
    prepare(experiment, log)  # generated once, before any worker reads it
    study = open_study(experiment, storage_url, study_name)
    queued = enqueue_seeds(study, experiment.search_space.build(),
                           experiment.search_space.load_seed_genomes(os.path.dirname(experiment.source)))
    if queued:
        log(f"queued {queued} seed genome(s)")
    available = gpu_count()
    devices = gpu_assignments(workers, gpus_per_worker, available)
    if gpus_per_worker and devices[0] is None:
        log(f"--gpus-per-worker {gpus_per_worker}: {available} GPU(s) found, {workers * gpus_per_worker} needed; "
            "workers share the visible devices")
    context = multiprocessing.get_context("spawn")
    processes = []
    for index in range(workers):
        process = context.Process(
            target=_worker_main, name=f"spinenas-worker-{index}",
            args=(index, experiment_path, list(overrides), storage_url, study_name, n_trials, timeout, devices[index]))
        process.start()
        processes.append(process)
        log(f"worker {index} started (pid {process.pid}"
            + (f", CUDA_VISIBLE_DEVICES={devices[index]})" if devices[index] is not None else ")"))
    wait_for_workers(processes)
    codes = [p.exitcode for p in processes]
    for index, code in enumerate(codes):
        if code:
            log(f"worker {index} ended with {'signal ' + str(-code) if code < 0 else 'status ' + str(code)}")
    return codes
