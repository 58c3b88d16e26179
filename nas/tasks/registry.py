"""The task registry that ``task.name`` in a config file selects from.

Each task registers itself where it is defined (``nas/tasks/detection``,
``nas/tasks/classification``, or a user's package) with :func:`register_task`;
``import nas.tasks`` loads the built-in ones. A user's task is named
``package.module:name`` in a config file: the module is imported (in every
process that reads the file: the search, its workers, the training children)
and must register ``name`` when imported.

Examples:
    >>> get_task("detection").name
    'detection'
    >>> get_task("no_such_package.tasks:mine")
    Traceback (most recent call last):
    ...
    nas.config.ConfigError: task 'no_such_package.tasks:mine': cannot import module 'no_such_package.tasks' (No module named 'no_such_package')
"""

from __future__ import annotations

import importlib

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
    """The registered task called ``name`` (``module:name`` imports ``module`` first); a ``ConfigError`` lists the
    registered names."""
    if name in TASKS:
        return TASKS[name]
    if ":" in name:
        return _imported_task(name)
    raise ConfigError(f"unknown task {name!r}{closest(name, TASKS)}; registered tasks: {', '.join(sorted(TASKS))} "
                      f"(a task of your own: 'package.module:name')")


def _imported_task(spec: str) -> Task:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"task {spec!r}: expected 'package.module:name'")
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"task {spec!r}: cannot import module {module!r} ({err})") from None
    if name not in TASKS:
        raise ConfigError(f"task {spec!r}: importing {module!r} registered no task {name!r}"
                          f"{closest(name, TASKS)}; registered tasks: {', '.join(sorted(TASKS))}")
    # Under its full name too: a config keeps the name it was given, and every lookup of it is then one step.
    TASKS[spec] = TASKS[name]
    return TASKS[name]


def task_names() -> list[str]:
    """Names of the registered tasks."""
    return sorted(name for name in TASKS if ":" not in name)
