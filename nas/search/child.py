"""Trials trained in a child process that talks to the parent through a pipe.

The parent never imports TensorFlow. A :class:`TrialProcess` keeps one
spawned child warm for several trials (TensorFlow already imported), and
replaces it after any failure, after ``trials_per_process`` trials, or when
its resident memory has grown by more than ``max_memory_growth_mb`` since its
first trial; a child that dies (killed, out of memory) fails its trial alone.

Protocol: the parent sends ``("train", genome, config, out_dir, reports)``; when
``reports`` the child reports each intermediate evaluation as ``("report", step,
metrics)`` and waits for ``True`` (go on) or ``False`` (prune) (without, the
task gets no report callback and may skip intermediate evaluations), and ends the trial with
``("done", metrics)``, ``("pruned", step)`` or ``("error", reason)``.
``("score", genomes, config, proxies, seed, batch_size)`` scores genomes with zero-cost
proxies (:func:`nas.screening.score_genomes`) and answers ``("scored", rows)``
or ``("error", reason)``. ``("stop",)`` ends the child.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from typing import Callable, Optional

import optuna

from nas.trials import TrialFailed

from nas.screening.scoring import DEFAULT_BATCH_SIZE


class TrialProcess:
    """A warm training process reused for consecutive trials (a context manager).

    Examples:
        >>> with TrialProcess(trials_per_process=4) as process:  # doctest: +SKIP
        ...     metrics = process.run(genome, config, "runs/x/trials/00000")
    """

    def __init__(self, trials_per_process: int = 1, max_memory_growth_mb: Optional[float] = None):
        self.trials_per_process = trials_per_process
        self.max_memory_growth_mb = max_memory_growth_mb
        self._process = self._conn = None
        self._trials = 0
        self._baseline_mb = None
        self.started = 0  # children started so far, for logs and tests

    def run(self, genome, config: dict, out_dir: str, report: Optional[Callable[[int, dict], bool]] = None) -> dict:
        """Train ``genome`` with the train config ``config`` (plain data); returns the task's metrics.

        ``report(step, metrics)`` returns False to prune (raises ``optuna.TrialPruned``).
        Raises :class:`TrialFailed` with the reason when the child raises, diverges or dies.
        """
        if self._process is None:
            self._start()
        try:
            self._conn.send(("train", genome.to_dict(), config, out_dir, report is not None))
            outcome = self._wait(report)
        except BaseException:
            self.close(wait=False)  # interrupted mid-trial: the child is busy and its state unknown
            raise
        if outcome is None:
            self._process.join(5)
            code = self._process.exitcode
            self.close()
            raise TrialFailed(f"training process ended without a result ({describe_exit(code)})")
        kind, payload = outcome
        self._trials += 1
        if kind == "error":
            self.close()  # whatever broke may have left the process in a bad state
            raise TrialFailed(payload)
        self._recycle_if_due()
        if kind == "pruned":
            raise optuna.TrialPruned(f"pruned at step {payload}")
        return payload

    def score(self, genomes, config: dict, proxies, seed: int = 0, batch_size: int = DEFAULT_BATCH_SIZE) -> list[dict]:
        """Zero-cost proxy scores of ``genomes`` (one dict per genome) under train config ``config`` (plain data),
        on a minibatch of ``batch_size`` training images.

        Raises :class:`TrialFailed` when scoring raises or the child dies.
        """
        if self._process is None:
            self._start()
        try:
            self._conn.send(("score", [g.to_dict() for g in genomes], config, list(proxies), seed, batch_size))
            outcome = self._wait(None)
        except BaseException:
            self.close(wait=False)
            raise
        if outcome is None or outcome[0] == "error":
            reason = outcome[1] if outcome else f"scoring process ended ({describe_exit(self._process.exitcode)})"
            self.close()
            raise TrialFailed(f"screening failed: {reason}")
        return outcome[1]

    @property
    def pid(self) -> Optional[int]:
        """The current child's process id (None when no child runs)."""
        return self._process.pid if self._process is not None else None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=_child_main, args=(child_end, os.getpid()), name="spinenas-trial",
                                        daemon=True)
        self._process.start()
        child_end.close()
        self._trials, self._baseline_mb = 0, None
        self.started += 1

    def _wait(self, report):
        while True:
            try:
                if self._conn.poll(0.5):
                    message = self._conn.recv()
                    if message[0] != "report":
                        return message
                    self._conn.send(True if report is None else bool(report(message[1], message[2])))
                elif not self._process.is_alive():
                    return None
            except (EOFError, OSError):  # the child died mid-message (killed, out of memory)
                return None

    def _recycle_if_due(self) -> None:
        if self._trials >= self.trials_per_process:
            self.close()
            return
        if self.max_memory_growth_mb is None:
            return
        resident = resident_mb(self._process.pid)
        if resident is None:
            return
        if self._baseline_mb is None:
            self._baseline_mb = resident  # after the first trial: TensorFlow and one model loaded
        elif resident - self._baseline_mb > self.max_memory_growth_mb:
            self.close()

    def close(self, wait: bool = True) -> None:
        """Stop the child: politely (it finishes what it is doing, up to 10 s), or at once when not ``wait``."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is None:
            return
        try:
            if process.is_alive():
                conn.send(("stop",))
        except (OSError, EOFError, ValueError):
            pass
        process.join(10 if wait else 0)
        end_process(process)
        conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def end_process(process, grace: float = 10.0) -> None:
    """Terminate ``process`` if it still runs, wait up to ``grace`` seconds, then kill it."""
    if process.is_alive():
        process.terminate()
        process.join(grace)
    if process.is_alive():
        process.kill()
        process.join()


def train_in_child(genome, config: dict, out_dir: str, report: Optional[Callable[[int, dict], bool]] = None) -> dict:
    """Train ``genome`` once in a fresh child process (see :meth:`TrialProcess.run`)."""
    with TrialProcess() as process:
        return process.run(genome, config, out_dir, report)


def resident_mb(pid: int) -> Optional[float]:
    """Resident memory of process ``pid`` in MB (Linux ``/proc``; None where unavailable)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def describe_exit(code) -> str:
    """A process exit code in words (``killed by SIGKILL; ...``)."""
    if code is None:
        return "still running"
    if code < 0:
        name = signal.Signals(-code).name
        hint = "; killed, perhaps out of memory" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {code}"


class _Pruned(Exception):
    pass


def exit_with_parent(parent: int, interval: float = 1.0) -> None:
    """End this process once ``parent`` is gone (checked every ``interval`` s by a daemon thread).

    For the processes a search spawns (training processes, local workers):
    ``daemon=True`` ends a child when its parent exits normally, but a parent
    killed by a signal (SIGTERM, SIGKILL, out of memory) leaves it running.
    Its trial is failed and requeued anyway, so training on only burns CPU.
    """
    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(3)

    threading.Thread(target=watch, name="spinenas-parent-watch", daemon=True).start()


def _child_main(conn, parent: Optional[int] = None) -> None:
    if parent is not None:
        exit_with_parent(parent)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":  # "0" is what --verbose asks for
        import logging

        # A warm process builds a new model per trial; TensorFlow's retracing notices are expected noise.
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        while True:
            message = conn.recv()
            if message[0] == "train":
                conn.send(_train_one(conn, *message[1:]))
            elif message[0] == "score":
                conn.send(_score(*message[1:]))
            else:
                return
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the parent went away
    finally:
        conn.close()


def _train_one(conn, genome_data: dict, config_data: dict, out_dir: str, reports: bool = True):
    step_seen = [0]
    try:
        from nas.config import from_data
        from nas.experiment import TrainConfig
        from nas.tasks import get_task
        from nas.tasks.base import TrainingDiverged
        from search_spaces.genome import Genome

        _forget_previous_trial()

        def report(step, metrics):
            step_seen[0] = step
            conn.send(("report", step, metrics))
            if not conn.recv():
                raise _Pruned

        config = from_data(TrainConfig, config_data, "")
        try:
            metrics = get_task(config.task.name).train_and_evaluate(
                Genome.from_dict(genome_data), config, report if reports else None, out_dir=out_dir)
        except TrainingDiverged as err:
            return ("error", f"diverged: {err}")
        return ("done", json.loads(json.dumps(metrics)))
    except _Pruned:
        return ("pruned", step_seen[0])
    except Exception as err:  # any failure of one trial is reported, not raised into the study
        _write_error_log(out_dir)
        last = traceback.extract_tb(err.__traceback__)[-1]
        return ("error", f"{type(err).__name__}: {err} (at {os.path.basename(last.filename)}:{last.lineno})")


ERROR_LOG = "error.log"


def _write_error_log(out_dir: str) -> None:
    """The exception being handled, traceback and all, in ``out_dir/error.log`` (the console gets one line)."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, ERROR_LOG), "w", encoding="utf-8") as handle:
            handle.write(traceback.format_exc())
    except OSError:
        pass  # the reason still reaches the trial; the file is a convenience


def _score(genome_data: list, config_data: dict, proxies: list, seed: int, batch_size: int):
    try:
        from nas.config import from_data
        from nas.experiment import TrainConfig
        from nas.screening import score_genomes
        from search_spaces.genome import Genome

        _forget_previous_trial()
        config = from_data(TrainConfig, config_data, "")
        rows = score_genomes([Genome.from_dict(g) for g in genome_data], config, proxies, seed=seed,
                             batch_size=batch_size)
        return ("scored", json.loads(json.dumps(rows)))
    except Exception as err:  # reported to the parent, which fails the trial
        last = traceback.extract_tb(err.__traceback__)[-1]
        return ("error", f"{type(err).__name__}: {err} (at {os.path.basename(last.filename)}:{last.lineno})")


def _forget_previous_trial() -> None:
    """Drop the previous trial's models and graphs so a warm process starts each trial clean."""
    if "tf_keras" in sys.modules:
        sys.modules["tf_keras"].backend.clear_session()
    gc.collect()
