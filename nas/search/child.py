"""One trial's training in a spawned child process, talking to the parent through a pipe.

The parent never imports TensorFlow. The child reports each intermediate
evaluation as ``("report", step, metrics)`` and waits for ``True`` (go on) or
``False`` (prune); it ends with ``("done", metrics)``, ``("pruned", step)`` or
``("error", reason)``. A child that dies without a word (killed, out of
memory) fails its trial alone.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import traceback
from typing import Callable, Optional

import optuna


class TrialFailed(Exception):
    """A trial that could not produce metrics; the reason is stored as its ``fail_reason`` attribute."""


def train_in_child(genome, config: dict, out_dir: str, report: Optional[Callable[[int, dict], bool]] = None) -> dict:
    """Train ``genome`` with the train config ``config`` (plain data) in a spawned process.

    ``report(step, metrics)`` returns False to prune (raises ``optuna.TrialPruned``).
    Raises :class:`TrialFailed` with the reason when the child raises, diverges or dies.
    """
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_child_main, args=(child_end, genome.to_dict(), config, out_dir),
                              name="spinenas-trial", daemon=True)
    process.start()
    child_end.close()
    outcome = None
    try:
        while outcome is None:
            try:
                if parent_end.poll(0.5):
                    message = parent_end.recv()
                    if message[0] == "report":
                        keep = True if report is None else report(message[1], message[2])
                        parent_end.send(keep)
                    else:
                        outcome = message
                elif not process.is_alive():
                    break
            except (EOFError, OSError):  # the child died mid-message (killed, out of memory)
                break
        process.join(30)
    finally:
        if process.is_alive():
            process.terminate()
            process.join(10)
            if process.is_alive():
                process.kill()
    if outcome is None:
        raise TrialFailed(f"training process ended without a result ({describe_exit(process.exitcode)})")
    kind, payload = outcome
    if kind == "done":
        return payload
    if kind == "pruned":
        raise optuna.TrialPruned(f"pruned at step {payload}")
    raise TrialFailed(payload)


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


def _child_main(conn, genome_data: dict, config_data: dict, out_dir: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    step_seen = [0]
    try:
        from nas.config import from_data
        from nas.experiment import TrainConfig
        from nas.tasks.base import TrainingDiverged
        from search_spaces.genome import Genome

        def report(step, metrics):
            step_seen[0] = step
            conn.send(("report", step, metrics))
            if not conn.recv():
                raise _Pruned

        config = from_data(TrainConfig, config_data, "")
        task = _task(config.task.name)
        try:
            metrics = task.train_and_evaluate(Genome.from_dict(genome_data), config, report, out_dir=out_dir)
        except TrainingDiverged as err:
            conn.send(("error", f"diverged: {err}"))
            return
        conn.send(("done", json.loads(json.dumps(metrics))))
    except _Pruned:
        conn.send(("pruned", step_seen[0]))
    except Exception as err:  # any failure of one trial is reported, not raised into the study
        last = traceback.extract_tb(err.__traceback__)[-1]
        conn.send(("error", f"{type(err).__name__}: {err} (at {os.path.basename(last.filename)}:{last.lineno})"))
    finally:
        conn.close()


def _task(name: str):
    from nas.tasks import get_task

    return get_task(name)
