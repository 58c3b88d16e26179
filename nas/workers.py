"""Several workers on one study: local worker processes, GPU pinning, and joining from other machines.

Workers coordinate only through the study's storage, so local workers
(``spinenas search FILE --workers N``) and workers on other machines
(``spinenas worker FILE --storage URL --study-name NAME``) mix freely.
Also here: each local worker's share of the cores (applied with
``nas.cpu.use_settings``, like oneDNN, before TensorFlow loads).
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
from typing import Callable, Optional, Sequence

from nas.cpu import onednn_settings, use_settings


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


# The memory ``--workers auto`` allows each local worker. Side by side on the default proxy, each
# training process peaked at 1.46-1.52 GB resident (sampled during bench/proxy.py --workers 2); 3 GiB leaves
# twice that, and an "8 GB" machine (about 7.6 GiB usable) still runs two workers.
MEMORY_PER_WORKER = 3 * 2**30

# cgroup v2 files that hold a container's limits (Docker --cpus/--memory, Kubernetes limits).
CGROUP_CPU = "/sys/fs/cgroup/cpu.max"
CGROUP_MEMORY = "/sys/fs/cgroup/memory.max"


def _cgroup_limit(path: str) -> Optional[list[int]]:
    """The numbers in a cgroup limit file, or None when there is no file or no limit ("max")."""
    try:
        with open(path, encoding="ascii") as handle:
            fields = handle.read().split()
        return [int(f) for f in fields]
    except (OSError, ValueError):  # absent (not Linux, cgroup v1) or "max"
        return None


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask (``taskset``), capped by a container's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call (macOS, Windows)
        cores = os.cpu_count() or 1
    quota = _cgroup_limit(CGROUP_CPU)
    if quota and len(quota) == 2 and quota[1] > 0:
        cores = min(cores, max(1, quota[0] // quota[1]))
    return cores


def physical_memory() -> Optional[int]:
    """This machine's memory in bytes, capped by a container's memory limit; None where the system does not say."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        memory = None
    limit = _cgroup_limit(CGROUP_MEMORY)
    if limit:
        memory = limit[0] if memory is None else min(memory, limit[0])
    return memory


def auto_workers(trials_left: int, *, gpus: int, cores: int, memory: Optional[int]) -> int:
    """How many local workers ``--workers auto`` runs.

    On a machine without GPUs, one worker per core, each on one thread: a proxy
    trial's small convolutions use a second core poorly (the train step is 1.4x
    faster on 2 threads, not 2x), so trials side by side finish more of them an
    hour (``bench/proxy.py --workers 2``). At most one worker per
    :data:`MEMORY_PER_WORKER` of memory and one per trial still to run. With
    GPUs, one worker, as before (``--gpus-per-worker`` spreads them).

        >>> auto_workers(50, gpus=0, cores=2, memory=24 * 2**30)
        2
        >>> auto_workers(1, gpus=0, cores=2, memory=24 * 2**30)
        1
        >>> auto_workers(50, gpus=1, cores=32, memory=None)
        1
    """
    if gpus:
        return 1
    by_memory = cores if memory is None else memory // MEMORY_PER_WORKER
    return max(1, min(cores, by_memory, trials_left))


def thread_settings(workers: int, cores: int, index: int = 0) -> dict[str, str]:
    """TensorFlow's thread-pool sizes for worker ``index`` of ``workers`` CPU workers sharing ``cores``.

    Each gets ``cores // workers`` threads, and the first ``cores % workers``
    one more, so no core is left over. Environment variables, so they reach the
    worker's training processes and take effect before TensorFlow starts. Left
    unpinned, every worker's TensorFlow sizes its pools to all cores and the
    workers' threads fight over them.

        >>> thread_settings(2, cores=2)
        {'TF_NUM_INTRAOP_THREADS': '1', 'TF_NUM_INTEROP_THREADS': '1'}
        >>> [thread_settings(3, cores=8, index=i)["TF_NUM_INTRAOP_THREADS"] for i in range(3)]
        ['3', '3', '2']
    """
    threads = str(max(1, cores // workers + (index < cores % workers)))
    return {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads}


def cpu_shares(workers: int) -> list[Optional[dict[str, str]]]:
    """Each of ``workers`` local workers' :func:`thread_settings`; None for all on a machine with GPUs."""
    if gpu_count():
        return [None] * workers
    cores = usable_cores()
    return [thread_settings(workers, cores, index) for index in range(workers)]


def describe_threads(settings: dict) -> str:
    """How many threads ``settings`` gives a worker, as its start line says it (the user's own values win)."""
    threads = os.environ.get("TF_NUM_INTRAOP_THREADS", settings["TF_NUM_INTRAOP_THREADS"])
    return f"{threads} CPU thread{'s' if threads != '1' else ''}"


def gpu_assignments(workers: int, per_worker: Optional[int], available: int) -> list[Optional[str]]:
    """``CUDA_VISIBLE_DEVICES`` for each worker: its own ``per_worker`` GPUs, or None (no pinning)."""
    if not per_worker:
        return [None] * workers
    if available < workers * per_worker:
        return [None] * workers
    return [",".join(str(g) for g in range(i * per_worker, (i + 1) * per_worker)) for i in range(workers)]


def start_worker_process(index: int, parent: int, threads: Optional[dict] = None) -> Callable[[str], None]:
    """What every spawned worker does first; returns its log function (lines prefixed ``[worker N]``).

    It dies with ``parent``, turns SIGTERM into Ctrl-C, hides Optuna's
    tracebacks of trials it reports itself, and takes its share of the cores
    (inherited by its training processes) before anything imports TensorFlow.
    """
    from nas.search.child import exit_with_parent
    from nas.search.study import hide_interrupted_trials

    exit_with_parent(parent)  # a command killed outright takes its workers with it
    interrupt_on_sigterm()
    hide_interrupted_trials()
    use_settings(threads)

    def log(line: str) -> None:
        print(f"[worker {index}] {line}", flush=True)

    return log


def _worker_main(index: int, experiment_path: str, overrides: Sequence[str], storage_url: Optional[str],
                 study_name: Optional[str], n_trials: Optional[int], timeout: Optional[float],
                 cuda_devices: Optional[str], parent: int, threads: Optional[dict] = None, workers: int = 1,
                 budget_start: Optional[float] = None) -> None:
    if cuda_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_devices  # inherited by this worker's training processes
    log = start_worker_process(index, parent, threads)
    from nas.experiment import load_experiment
    from nas.search.driver import SearchStopped, run_search
    from nas.trials import TrialFailed

    try:
        run_search(load_experiment(experiment_path, overrides), n_trials=n_trials, timeout=timeout,
                   storage_url=storage_url, study_name=study_name, log=log, enqueue=False, workers=workers,
                   budget_start=budget_start)
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
    """Prepare the study once, run ``workers`` worker processes on it, and return their exit codes.

    On a machine without GPUs, each worker's TensorFlow gets its share of the
    cores (:func:`thread_settings`). A ``timeout`` counts from this call: the
    data, the pre-screen and the workers' start-up come out of it.
    """
    begun = time.time()
    use_settings(onednn_settings())  # before the pre-screen here starts its scoring process
    from nas.experiment import load_experiment
    from nas.search.driver import confirm_time_split, prepare, queue_first_trials
    from nas.search.study import open_study
    from nas.search.latency import prepare_latency
    from nas.search.objective import Objective

    experiment = load_experiment(experiment_path, overrides)
    data = prepare(experiment, log)  # generated once, before any worker reads it
    prepare_latency(experiment, data.num_classes, log)  # likewise the latency table's missing kernels
    budget = experiment.search.timeout if timeout is None else timeout
    if budget is not None and experiment.confirm is not None:
        confirm_time_split(experiment, budget, workers, data, log, progress=True)
    study = open_study(experiment, storage_url, study_name)
    space = experiment.search_space.build()
    target = experiment.search.n_trials if n_trials is None else n_trials
    # Queued here, before any worker samples, so a screened search's first trials are the pre-screened ones.
    objective = Objective(experiment, space, data.num_classes, log, target=target) \
        if experiment.search.screening and not study.user_attrs.get("prescreened") else None
    try:
        queue_first_trials(study, experiment, space, objective and objective.screener, target, log)
    finally:
        if objective is not None:
            objective.close()
    available = gpu_count()
    devices = gpu_assignments(workers, gpus_per_worker, available)
    if gpus_per_worker and devices[0] is None:
        log(f"--gpus-per-worker {gpus_per_worker}: {available} GPU(s) found, {workers * gpus_per_worker} needed; "
            "workers share the visible devices")
    threads = cpu_shares(workers)
    notes = [f"CUDA_VISIBLE_DEVICES={devices[i]}" if devices[i] is not None
             else describe_threads(threads[i]) if threads[i] else "" for i in range(workers)]
    return run_processes(_worker_main, [(index, experiment_path, list(overrides), storage_url, study_name, n_trials,
                                         timeout, devices[index], os.getpid(), threads[index], workers, begun)
                                        for index in range(workers)], "spinenas-worker", notes, log)


def run_processes(target: Callable, arguments: Sequence[tuple], name: str, notes: Sequence[str] = (),
                  log=print) -> list[int]:
    """Start one spawned process per argument tuple, ``target(*args)``, wait for all, and return their exit codes.

    ``notes`` (one per process: its threads or GPUs) go in its "started" line.
    A search, a fidelity run and a confirmation start their workers this way.
    """
    context = multiprocessing.get_context("spawn")
    processes = []
    for index, args in enumerate(arguments):
        process = context.Process(target=target, name=f"{name}-{index}", args=tuple(args))
        process.start()
        processes.append(process)
        note = notes[index] if index < len(notes) else ""
        log(f"worker {index} started (pid {process.pid}" + (f", {note})" if note else ")"))
    wait_for_workers(processes)
    codes = [p.exitcode for p in processes]
    for index, code in enumerate(codes):
        if code:
            log(f"worker {index} ended with {'signal ' + str(-code) if code < 0 else 'status ' + str(code)}")
    return codes
