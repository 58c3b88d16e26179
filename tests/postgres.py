"""A throwaway PostgreSQL server on a loopback port, in a temporary folder (Debian's postgresql package)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest


def server_binaries() -> str | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(folder, "pg_ctl")):
            return folder
    found = shutil.which("pg_ctl")
    return os.path.dirname(found) if found else None


def throwaway_postgres() -> "ThrowawayPostgres":
    """A :class:`ThrowawayPostgres` to enter, or skip the test where PostgreSQL is not installed.

    In CI (``CI`` set) a missing server fails the test instead: .ci/run installs it, so its absence
    is a broken CI machine, not a reason to run less.
    """
    if server_binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing in CI: .ci/run installs it")
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql)")
    return ThrowawayPostgres()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """``with ThrowawayPostgres() as url:`` gives ``postgresql://...`` and removes everything after."""

    def __init__(self):
        self.bin = server_binaries()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.folder = tempfile.mkdtemp(prefix="spinenas-pg-")
        self.port = _free_port()
        self.user = "spinenas"

    def _run(self, *args, **kwargs):
        command = [os.path.join(self.bin, args[0]), *args[1:]]
        # PostgreSQL refuses to run as root: run it as the owner of the folder.
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)

    def __enter__(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        data = os.path.join(self.folder, "data")
        self._run("initdb", "-D", data, "-U", self.user, "--auth=trust", "-E", "UTF8")
        # Parallel test workers may pick the same free port before either binds it: the loser
        # fails to start (pg_ctl -w reports it) and tries another port.
        for attempt in range(3):
            try:
                self.start()
                break
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise
                self.port = _free_port()
        url = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return url
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start; see {self.folder}/log")

    def stop(self) -> None:
        """Stop the server (connections drop), keeping its data."""
        self._run("pg_ctl", "-D", os.path.join(self.folder, "data"), "-m", "fast", "-w", "stop")

    def start(self) -> None:
        """Start the server on its port and data (again after :meth:`stop`)."""
        self._run("pg_ctl", "-D", os.path.join(self.folder, "data"), "-l", os.path.join(self.folder, "log"), "-w",
                  "-t", "60", "start", "-o", f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off")

    def __exit__(self, *exc):
        try:
            if os.path.exists(os.path.join(self.folder, "data", "postmaster.pid")):  # not stopped by a test
                self._run("pg_ctl", "-D", os.path.join(self.folder, "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
