"""How long ``make test`` takes on a fresh clone, as CI runs it: install, then the whole suite.

Run by hand, on an idle machine, from the repository root:

    python bench/suite_time.py            # -> bench/results/suite_time.json

Clones the committed HEAD into a temporary folder (with ``../shared`` linked
beside it, as CI has it), then times ``make install`` (a new ``.venv``) and
``make test`` separately, and records the wall times, pytest's last line, the
slowest tests pytest reports, the machine and the one-minute load before and
after. Uncommitted changes are not in the clone: commit first.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

OUT = "bench/results/suite_time.json"


def timed(command: list[str], cwd: str, log: str, **env) -> float:
    """Run ``command`` in ``cwd`` with its output to the file ``log``; its wall seconds (exits on failure)."""
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as handle:
        code = subprocess.call(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **env})
    seconds = time.monotonic() - started
    if code not in (0, 1):  # 1: some tests failed, still a timing (recorded with pytest's summary)
        sys.exit(f"{' '.join(command)} exited with {code}; see {log}")
    return seconds


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    head = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=root, text=True).strip()
    dirty = bool(subprocess.check_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                         text=True).strip())
    work = tempfile.mkdtemp(prefix="spinenas-suite-")
    clone = os.path.join(work, "spinenas")
    subprocess.check_call(["git", "clone", "--quiet", root, clone])
    shared = os.path.join(os.path.dirname(root), "shared")
    if os.path.isdir(shared):
        os.symlink(shared, os.path.join(work, "shared"))
    load_before = os.getloadavg()[0]
    print(f"fresh clone in {clone}; make install ...", flush=True)
    install = timed(["make", "install"], clone, os.path.join(work, "install.log"))
    print(f"make install: {install:.0f} s; make test ...", flush=True)
    test_log = os.path.join(work, "test.log")
    test = timed(["make", "test"], clone, test_log, PYTEST_ADDOPTS="--durations=15")
    with open(test_log, encoding="utf-8") as handle:
        text = handle.read()
    summary = [line.strip("= ") for line in text.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    slowest = re.findall(r"^(\d+\.\d+)s (call|setup|teardown)\s+(\S+)", text, re.M)
    record = {
        "command": "python bench/suite_time.py",
        "uncommitted_changes_left_out": dirty,
        "make_install_s": round(install, 1),
        "make_test_s": round(test, 1),
        "pytest": summary[-1] if summary else None,
        "slowest": [{"seconds": float(s), "phase": phase, "test": name} for s, phase, name in slowest],
        "machine": {"processor": _processor(), "cores": len(os.sched_getaffinity(0)),
                    "python": platform.python_version()},
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "head": head[:12],
    }
    os.makedirs(os.path.dirname(os.path.join(root, OUT)), exist_ok=True)
    with open(os.path.join(root, OUT), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    print(f"make test: {test:.0f} s ({record['pytest']}); recorded in {OUT}")


def _processor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
