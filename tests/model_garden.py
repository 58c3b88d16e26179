"""The TF Model Garden, installed for comparison only: tests build its models to check spinenas against them.

spinenas never imports Model Garden at run time. The tests that compare with
it install ``tf-models-official`` without its dependencies, plus the few
packages its vision models import, into one cached folder (pinned versions,
``pip install --no-deps --target``), and put that folder at the end of
``sys.path``, behind everything the project itself installed.

The folder is ``$SPINENAS_MODEL_GARDEN`` or
``~/.cache/spinenas/model-garden-<version>``; the first test to need it
installs it (about 250 MB from PyPI, under a lock, so parallel test workers
install it once), later runs reuse it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile

VERSION = "2.20.0"
# What official.vision's model builders import beyond TensorFlow, tf_keras, numpy and PyYAML.
PACKAGES = (f"tf-models-official=={VERSION}", "gin-config==0.5.0", "tensorflow-datasets==4.9.10", "etils==1.15.0",
            "immutabledict==4.3.1", "opencv-python-headless==5.1.0.95", "toml==0.10.2", "promise==2.3")


def folder() -> str:
    """Where the reference package lives (installed or not)."""
    return os.environ.get("SPINENAS_MODEL_GARDEN") or os.path.expanduser(f"~/.cache/spinenas/model-garden-{VERSION}")


def install() -> str:
    """Install the reference package into :func:`folder` unless it is there; return the folder."""
    target = folder()
    done = os.path.join(target, ".installed")
    if os.path.exists(done):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target + ".lock", "w") as lock, _locked(lock):
        if os.path.exists(done):  # another test worker installed it while this one waited
            return target
        staging = tempfile.mkdtemp(prefix="model-garden-", dir=os.path.dirname(target))
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                   "--target", staging, *PACKAGES]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"could not install the Model Garden for comparison ({' '.join(command)}):\n"
                               f"{result.stdout}{result.stderr}")
        shutil.rmtree(target, ignore_errors=True)
        os.rename(staging, target)
        with open(done, "w") as handle:
            handle.write("\n".join(PACKAGES) + "\n")
    return target


@contextlib.contextmanager
def _locked(handle):
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def on_path() -> None:
    """Install if needed and make ``import official`` work (the folder goes last on ``sys.path``)."""
    target = install()
    if target not in sys.path:
        sys.path.append(target)
