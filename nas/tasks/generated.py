"""Generated datasets written once, safely, however many workers ask for them at the same moment."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable


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
