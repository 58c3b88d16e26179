"""Generated datasets: named after their settings, written once however many workers ask at the same moment."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable

from nas.config import ConfigError


def check_source(root, shapes, hint: str) -> None:
    """Raise :class:`ConfigError` when there is neither a ``root`` nor a generator (``shapes``) to fill one.

    ``hint`` says what ``root`` should hold.
    """
    if root is None and shapes is None:
        raise ConfigError(f"root: required when generate_shapes is null ({hint})")


def resolved_root(root, name: str, image_size: int, shapes) -> str:
    """``root``, or when it is null the folder under ``runs/data/`` of the generated dataset, named after its settings.

    Changed settings name another folder, so they never reuse a stale dataset.

    Examples:
        >>> import types
        >>> resolved_root(None, "shapes", 64, types.SimpleNamespace(train=10, val=5, seed=2)).split(os.sep)
        ['runs', 'data', 'shapes-64px-10-5-seed2']
        >>> resolved_root("data/coco", "shapes", 64, None)
        'data/coco'
    """
    if root is not None:
        return root
    return os.path.join("runs", "data", f"{name}-{image_size}px-{shapes.train}-{shapes.val}-seed{shapes.seed}")


def generate_if_missing(data, write_dataset: Callable[..., object], ready: Callable[[], bool],
                        progress: bool = False) -> None:
    """Write ``data``'s generated dataset into ``data.resolved_root`` unless it is not generated or ``ready()``.

    ``data`` is a task's data settings (``generate_shapes``, ``image_size``,
    ``resolved_root``); ``write_dataset(folder, train=, val=, image_size=,
    seed=, progress=)`` writes the dataset; ``ready()`` tells whether it is
    complete at ``data.resolved_root``.
    """
    shapes = data.generate_shapes
    if shapes is None or ready():
        return
    write_once(data.resolved_root,
               lambda folder: write_dataset(folder, train=shapes.train, val=shapes.val, image_size=data.image_size,
                                            seed=shapes.seed, progress=progress),
               ready=ready)


def write_once(root: str, write: Callable[[str], object], ready: Callable[[], bool]) -> None:
    """Run ``write(folder)`` into a staging folder beside ``root`` and rename it to ``root``.

    Concurrent workers never read a half-written dataset: the rename is
    atomic, and when another worker's rename wins, ``ready()`` (the dataset
    is complete at ``root``) turns the losing rename's error into success.
    """
    parent = os.path.dirname(os.path.abspath(root)) or "."
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}-", dir=parent)
    try:
        write(staging)
        try:
            os.rename(staging, root)
        except OSError:
            if not ready():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
