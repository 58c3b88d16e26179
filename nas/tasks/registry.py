"""The task registry that ``task.name`` in a config file selects from.

Each task registers itself where it is defined (``nas/tasks/detection``,
``nas/tasks/classification``, or a user's package) with :func:`register_task`;
``import nas.tasks`` loads the built-in ones.
"""

from __future__ import annotations

from nas.config import ConfigError, closest
from nas.tasks.base import Task

TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` (an instance) under ``task.name``; returns it, so it works as a one-line registration."""
    if not isinstance(task, Task):
        raise TypeError(f"register_task expects a Task instance, got {task!r}")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The registered task called ``name``; a ``ConfigError`` lists the registered names."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}{closest(name, TASKS)}; registered tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_names() -> list[str]:
    """Names of the registered tasks."""
    return sorted(TASKS)
