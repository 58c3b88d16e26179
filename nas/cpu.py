"""What a process's TensorFlow gets of this machine's CPU, set in the environment before TensorFlow loads.

TensorFlow reads these variables once, at import; the processes it starts
inherit them. Nothing here imports TensorFlow or any other part of spinenas.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Optional


ONEDNN = "TF_ENABLE_ONEDNN_OPTS"


def onednn_settings(machine: Optional[str] = None, system: Optional[str] = None) -> dict[str, str]:
    """``TF_ENABLE_ONEDNN_OPTS=1`` on x86-64 Linux or Windows (default: this machine), else nothing.

    TensorFlow turns its oneDNN kernels on by itself only on x86 CPUs with
    AVX-512 VNNI or BF16, AVX-VNNI or AMX. On an AVX2-only AMD EPYC (2 cores)
    the proxy's train step took 774 ms on one thread with TensorFlow's own
    kernels and 565 ms with oneDNN; two one-thread trials side by side, 748-819
    against 620-634 ms a step. The kernels differ only in the order of their
    floating-point sums. Elsewhere (aarch64; macOS, whose TensorFlow has no
    oneDNN kernels) TensorFlow's own choice stands.
    Applied with :func:`use_settings`, so ``TF_ENABLE_ONEDNN_OPTS=0`` set by
    the user keeps TensorFlow's kernels.

    >>> onednn_settings("x86_64", "linux"), onednn_settings("aarch64", "linux"), onednn_settings("x86_64", "darwin")
    ({'TF_ENABLE_ONEDNN_OPTS': '1'}, {}, {})
    """
    machine = (machine or platform.machine()).lower()
    system = system or sys.platform
    x86 = machine in ("x86_64", "amd64")
    return {ONEDNN: "1"} if x86 and (system.startswith("linux") or system == "win32") else {}


def onednn_setting() -> Optional[bool]:
    """Whether ``TF_ENABLE_ONEDNN_OPTS`` asks for oneDNN (True), against it (False), or is unset (None)."""
    value = os.environ.get(ONEDNN, "").strip().lower()
    return True if value in ("1", "true") else False if value in ("0", "false") else None


def use_settings(environment: Optional[dict]) -> None:
    """Put ``environment`` into this process's environment, keeping any variable the user set already."""
    for key, value in (environment or {}).items():
        os.environ.setdefault(key, value)
