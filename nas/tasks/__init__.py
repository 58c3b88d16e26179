"""Proxy tasks by name: the registry that ``task.name`` in a config file selects from.

The built-in tasks register themselves where they are defined
(``nas/tasks/detection``, ``nas/tasks/classification``); a user task is a
:class:`nas.tasks.base.Task` subclass passed to :func:`register_task` before
the experiment is loaded.
"""

from __future__ import annotations

from nas.tasks.base import Task

TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` (an instance) under ``task.name``; returns it, so it works as a one-line registration."""
    if not isinstance(task, Task):
        raise TypeError(f"register_task expects a Task instance, got {task!r}")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The registered task called ``name``; a ``ValueError`` lists the registered names."""
    _load_builtin()
    if name not in TASKS:
        from nas.config import ConfigError, closest

        raise ConfigError(f"unknown task {name!r}{closest(name, TASKS)}; registered tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_names() -> list[str]:
    """Names of the registered tasks."""
    _load_builtin()
    return sorted(TASKS)


def _load_builtin() -> None:
    # Imported on first use so that each task package can import this registry.
    import nas.tasks.classification  # noqa: F401
    import nas.tasks.detection  # noqa: F401


__all__ = ["TASKS", "Task", "get_task", "register_task", "task_names"]
