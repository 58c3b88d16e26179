"""Proxy tasks: the contract (:mod:`~nas.tasks.base`), the shared training code, the registry, and the built-ins.

Importing this package registers the built-in tasks (detection, classification);
a user task is a :class:`nas.tasks.base.Task` subclass passed to
:func:`register_task` before the experiment is loaded.
"""

from __future__ import annotations

from nas.tasks.base import Task
from nas.tasks.registry import TASKS, get_task, register_task, task_names

import nas.tasks.classification  # noqa: E402,F401  (each built-in task registers itself)
import nas.tasks.detection  # noqa: E402,F401

__all__ = ["TASKS", "Task", "get_task", "register_task", "task_names"]
