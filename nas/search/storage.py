"""Optuna storages: opening SQLite, PostgreSQL, MySQL or journal files, and riding out lost connections."""

from __future__ import annotations

import os
import time
import warnings
from typing import Callable

import optuna

# Attempts at one storage action, waiting 1, 2, 4, 8, 16, 30 and 30 s between them: about 90 s in all,
# enough for a database server to restart (a 20 s restart under three workers is tested).
STORAGE_RETRIES = 8
MAX_RETRY_DELAY = 30.0
SCHEMES = ("sqlite", "postgresql", "mysql", "journal")


class StorageError(ConnectionError):
    """A study storage that cannot be reached or opened."""


def open_storage(url: str, heartbeat_interval: int = 30, max_retries: int = 1, *, create: bool = True):
    """An Optuna storage for ``url``: SQLite, PostgreSQL or MySQL (RDB), or ``journal:///path``.

    RDB storages get heartbeats, so a trial whose worker died is marked FAIL
    and (up to ``max_retries`` times) re-queued with the same parameters.
    With ``create=False`` a SQLite or journal file that does not exist is an
    error instead of a new, empty storage (read-only commands use this).
    """
    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal://"):]
        if not create and not os.path.exists(path):
            raise StorageError(f"cannot open storage {url}: no such file")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not create and not os.path.exists(path):
            raise StorageError(f"cannot open storage {url}: no such file")
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=heartbeat_interval,
                    grace_period=3 * heartbeat_interval, heartbeat_stale_trial_callback=retry(max_retry=max_retries))
            break
        except Exception as err:  # SQLAlchemy and the drivers raise many kinds; all mean "cannot open".
            if _created_concurrently(err) and attempt < 2:
                time.sleep(1)  # another worker is creating the same tables on an empty database
                continue
            _raise_storage_error(url, err)
    if url.startswith("sqlite"):
        _share_sqlite(storage)
    return storage


def _created_concurrently(err: Exception) -> bool:
    text = cause(err).lower()
    # PostgreSQL says "duplicate key"; SQLite says "UNIQUE constraint failed" (two processes stamping
    # alembic_version at once).
    return "already exists" in text or "duplicate key" in text or "unique constraint failed" in text


def _raise_storage_error(url: str, err: Exception):
    text = cause(err)
    if "Failed to import DB access module" in text:
        extra = "postgres" if url.startswith("postgresql") else "mysql" if url.startswith("mysql") else None
        text = f"no database driver installed for it; pip install 'spinenas[{extra}]'" if extra else text
    raise StorageError(f"cannot open storage {redacted(url)}: {text}") from None


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # Several local workers share the file: wait for the lock instead of failing.
        return {"connect_args": {"timeout": 300}}
    if url.startswith(("postgresql", "mysql")):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
    return {"pool_pre_ping": True}


def _share_sqlite(storage) -> None:
    """Write-ahead logging and whole-transaction locks for a SQLite file shared by local workers.

    ``BEGIN IMMEDIATE`` makes each transaction take the write lock when it
    starts: sqlite3 otherwise starts one only at the first write, so two
    workers could both read a queued trial as WAITING and both claim it
    (``study.ask`` and the fidelity workers decide that way). Reads inside a
    transaction therefore wait their turn too; Optuna's transactions are short
    and the busy timeout is long. Write-ahead logging still lets other readers
    (a dashboard, the sqlite3 shell) read while a worker writes.
    """
    import sqlalchemy

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _on_connect(connection, _record):
        connection.isolation_level = None  # sqlite3 issues no BEGIN of its own; "begin" below does
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=300000")
        cursor.close()

    @sqlalchemy.event.listens_for(storage.engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    storage.engine.dispose()  # reconnect so every pooled connection gets the pragmas


def cause(err: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's boilerplate."""
    inner = err
    # Optuna 5 wraps database errors (StorageInternalError); the driver's message is underneath.
    while getattr(inner, "orig", None) is None and inner.__cause__ is not None:
        inner = inner.__cause__
    text = str(getattr(inner, "orig", None) or inner)
    text = text.split("(Background on this error")[0]
    return " ".join(text.split())[:300]


def redacted(url: str) -> str:
    """``url`` with any password hidden, for messages and logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def is_connection_error(err: BaseException) -> bool:
    """True when ``err`` (or what it wraps) means the database went away, not a bug or bad input."""
    return lost_connection(err) is not None


def lost_connection(err: BaseException):
    """The error in ``err``'s chain that says the database went away, or None."""
    import sqlalchemy.exc

    kinds = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError,
             ConnectionError)
    seen = err
    # Optuna wraps SQLAlchemy errors in its own (StorageInternalError), and a failed write in its
    # trial bookkeeping can surface as another error raised while handling it (Optuna 5.1's
    # UnboundLocalError for 'updated_state').
    for _ in range(5):
        if isinstance(seen, kinds):
            return seen
        seen = seen.__cause__ or seen.__context__
        if seen is None:
            return None
    return None


def with_retries(action: Callable, url: str, log: Callable[[str], None] = print):
    """Run a storage action, retrying lost connections with exponential backoff (1, 2, 4 ... 30 s)."""
    delay = 1.0
    for attempt in range(1, STORAGE_RETRIES + 1):
        try:
            return action()
        except Exception as err:
            lost = lost_connection(err)
            if lost is None:
                raise
            if attempt == STORAGE_RETRIES:
                raise StorageError(f"lost the connection to storage {url} ({cause(lost)}); gave up after "
                                   f"{attempt} attempts. Finished trials are safe; run the command again "
                                   "when the database is back") from None
            log(f"storage {url} unreachable ({cause(lost)[:120]}); retrying in {delay:.0f} s")
            time.sleep(delay)
            delay = min(2 * delay, MAX_RETRY_DELAY)
