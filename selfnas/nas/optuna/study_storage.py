"""Where a study lives: SQLite in the run, a journal file (one machine) or a database server.

Three promises, each for a failure seen on a real PostgreSQL server:

* **First starts.** Optuna creates its tables when a storage is first opened; processes started
  together on an empty database used to collide in PostgreSQL's catalogue (``UniqueViolation`` on
  ``pg_type_typname_nsp_index``). On PostgreSQL the creation runs under an advisory lock
  (:data:`SCHEMA_LOCK`), one process after the other; on other databases a collision is retried.
* **Clear causes.** A database that cannot be opened is one line that names the cause the
  driver reported (connection refused, no such database, authentication) and what to do.
* **Outages.** Once open, every call to the database that fails because the connection was lost
  (a server restart, a network drop) is retried with backoff (0.5 s doubling to 5 s) for up to
  :data:`OUTAGE_S` seconds; then the worker ends with one line (:class:`StudyStorageError`), and
  the trial it was running stays RUNNING under its owner, to be failed and retried (see
  :mod:`~selfnas.nas.optuna.study_ledger`). Heartbeats (:data:`HEARTBEAT_S`, grace
  :data:`GRACE_S`) are sized so that an outage shorter than :data:`OUTAGE_S` never makes a live
  trial look dead: ``HEARTBEAT_S + OUTAGE_S + 5 s < GRACE_S``.

Journal files are locked with ``flock`` on ``FILE.lock`` (:class:`selfnas.locks.FileLock`: released
by the kernel when a process dies, so a worker killed while writing never leaves a lock behind,
unlike Optuna's default symlink lock).
"""

from __future__ import annotations

import functools
import inspect
import random
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from selfnas.config import SearchConfig
from selfnas.errors import ConfigError, SelfnasError
from selfnas.faults import refused_write
from selfnas.locks import FileLock
from selfnas.nas.optuna.study_ledger import retry_trial
from selfnas.rundir import RunDir

#: seconds between a running trial's heartbeats (RDB storages); >= 60 so slow trials are not reaped
HEARTBEAT_S = 60
#: a RUNNING trial whose heartbeat is older than this is failed (and retried) by any process
GRACE_S = 180
#: how long a worker retries a lost database connection before it gives up
OUTAGE_S = 90.0
#: seconds a first connection may take (an unreachable host fails after this, not minutes)
CONNECT_TIMEOUT_S = 10
#: the PostgreSQL advisory lock key under which Optuna's tables are created ("selfnas" in hex)
SCHEMA_LOCK = 0x73656C666E6173
_BACKOFF_S = (0.5, 5.0)  # first wait, longest wait

_outage = threading.Lock()
_in_outage = False  # this process is waiting for its database
_last_reconnect = 0.0  # time.monotonic() when this process last got its database back


class StudyStorageError(SelfnasError):
    """The study's database stayed unreachable longer than :data:`OUTAGE_S`."""


def last_reconnect() -> float:
    """``time.monotonic()`` of this process's last recovery from a lost connection (0.0: none)."""
    return _last_reconnect


def storage_url(run: RunDir, search: SearchConfig) -> str:
    """The study's storage; several workers on SQLite are refused ("database is locked"), and so
    is a journal file whose folder does not exist. Touches nothing on disk: the search calls it
    before anything is written."""
    url = search.storage or f"sqlite:///{(run.path / 'study.db').resolve()}"
    if search.n_workers > 1 and url.startswith("sqlite"):
        raise ConfigError(
            "several workers cannot share SQLite; use search.storage=journal:FILE (one machine) "
            "or a postgresql:// URL (several machines)"
        )
    if url.startswith("journal:"):
        journal = Path(url[len("journal:") :])
        folder = journal.parent
        if not folder.is_dir():
            problem = "does not exist" if not folder.exists() else "is not a directory"
            raise ConfigError(
                f"the folder {folder} of the journal file {journal} {problem}; "
                f"create it first (mkdir -p {folder}) or give journal:PATH in an existing folder"
            )
        if journal.is_dir():
            raise ConfigError(f"the journal file {journal} is a directory; give journal:PATH of a file")
    return url


def shown_url(url: str) -> str:
    """``url`` fit to print: a database password is replaced by ``***``."""
    if url.startswith(("journal:", "sqlite")):
        return url
    try:
        import sqlalchemy.engine

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not parseable: show the scheme only
        return url.split(":", 1)[0] + "://..."


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage at ``url``; creates Optuna's tables on first use, safely under concurrency."""
    if url.startswith("journal:"):  # one journal file, appended under a file lock by every local worker
        from optuna.storages.journal import JournalFileBackend

        journal = url[len("journal:") :]
        try:
            return optuna.storages.JournalStorage(
                JournalFileBackend(journal, lock_obj=FileLock(f"{journal}.lock", mode=0o644))
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot open the journal file {journal}: {exc.strerror}; "
                "give journal:PATH of a file you may write"
            ) from None
    return _open_database(url)


def _open_database(url: str) -> optuna.storages.BaseStorage:
    import sqlalchemy

    postgres = url.startswith("postgresql")
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if postgres else {}
    # pre-ping: a pooled connection that a server restart closed is replaced, not used and failed
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True, "connect_args": connect_args}

    def create() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; they are what we need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return ResilientRDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=retry_trial,  # a dead worker's trial: failed, then retried
            )  # fmt: skip

    deadline = time.monotonic() + OUTAGE_S
    for attempt in range(1000):
        try:
            if not postgres:
                return create()
            lock = sqlalchemy.create_engine(
                url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args
            )
            try:
                with lock.connect() as conn:  # creation one process at a time, per database
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK})
                    try:
                        return create()
                    finally:
                        conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK})
            finally:
                lock.dispose()
        except Exception as exc:  # SQLAlchemy and the drivers raise many types for one cause
            retry = (_collided(exc) and attempt < 5) or (_restarting(exc) and time.monotonic() < deadline)
            if not retry:
                raise ConfigError(_cannot_open(url, exc)) from None
            time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))  # jitter: colliding starts drift apart
    raise AssertionError("unreachable")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def _collided(exc: BaseException) -> bool:
    """Two first starts created the same table or row at once (any database but PostgreSQL,
    where the advisory lock prevents it)."""
    import sqlalchemy.exc

    text = " ".join(str(e) for e in _chain(exc)).lower()
    return any(isinstance(e, sqlalchemy.exc.IntegrityError) for e in _chain(exc)) or "already exists" in text


def _restarting(exc: BaseException) -> bool:
    """PostgreSQL is starting up or shutting down (SQLSTATE 57P01 / 57P03): a restart, worth waiting for."""
    return any(getattr(getattr(e, "orig", e), "sqlstate", None) in ("57P01", "57P03") for e in _chain(exc))


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it: Optuna wraps driver errors) is a lost or refused
    connection, or another transient server-side failure that a retry can cure."""
    import sqlalchemy.exc

    if refused_write(exc) is not None:  # a full or read-only disk: no retry cures it
        return False
    for e in _chain(exc):
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if type(e).__module__.startswith("psycopg") and type(e).__name__ in (
            "OperationalError",
            "InterfaceError",
        ):
            return True
    return False


def _cannot_open(url: str, exc: BaseException) -> str:
    import sqlalchemy.engine

    try:
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
        parsed = sqlalchemy.engine.make_url(url)
        where = f"{parsed.host or 'localhost'}" + (f":{parsed.port}" if parsed.port else "")
        database, user = parsed.database, parsed.username
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse at all
        return f"cannot open study storage {url!r}: not a database URL; give postgresql://USER@HOST[:PORT]/DB"
    low = " ".join(str(e) for e in _chain(exc)).lower()
    if url.startswith("sqlite"):
        hint = f"{_first_line(exc)}; check that its folder exists and that you may write there"
    elif "connection refused" in low:
        hint = f"no database server answers at {where} (connection refused); start it, or fix host and port"
    elif "timeout" in low or "timed out" in low:
        hint = (
            f"no answer from {where} within {CONNECT_TIMEOUT_S} s; check the host, the network and firewalls"
        )
    elif "could not translate host name" in low or "name or service not known" in low:
        hint = f"the host in {where} is unknown; fix the host name"
    elif "database" in low and "does not exist" in low:
        hint = f"the server at {where} has no database {database!r}; create it (createdb {database})"
    elif "authentication failed" in low or ("role" in low and "does not exist" in low) or "no pg_hba" in low:
        hint = f"the server at {where} refused user {user!r}; check the user, password and pg_hba.conf"
    elif "no module named" in low or "can't load plugin" in low or isinstance(exc, ImportError):
        hint = "the database driver is missing or the URL scheme is wrong (use postgresql://)"
    else:
        hint = f"{_first_line(exc)}; check the URL and that the database server is up"
    return f"cannot open study storage {shown}: {hint}"


class _CallDepth(threading.local):
    depth = 0


def _retrying(method: Any) -> Any:
    """``method`` of :class:`ResilientRDBStorage`, retried while the connection is lost."""

    @functools.wraps(method)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        calls = self.__dict__.get("_calls")
        if (
            calls is None or calls.depth
        ):  # while opening (errors are the caller's), or nested in a retried call
            return method(self, *args, **kwargs)
        if self._gave_up:
            raise StudyStorageError(self._gave_up)
        patience = OUTAGE_S if self.outage_s is None else self.outage_s
        lost_at: float | None = None
        wait = _BACKOFF_S[0]
        while True:
            calls.depth += 1
            try:
                result = method(self, *args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if lost_at is None or method.__name__ != "set_trial_state_values":
                    raise
                result = True  # the attempt whose answer was lost had finished the trial already
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                now = time.monotonic()
                if lost_at is None:
                    lost_at = now
                    _lost(exc)
                if now - lost_at >= patience:
                    self._gave_up = (
                        f"the study database was unreachable for {patience:.0f} s ({_first_line(exc)}); "
                        "this worker stopped and its trial will be retried: run the same command again "
                        "once the server is back (with --resume for the same --out)"
                    )
                    raise StudyStorageError(self._gave_up) from None
                time.sleep(min(wait, lost_at + patience - now))
                wait = min(2 * wait, _BACKOFF_S[1])
                continue
            finally:
                calls.depth -= 1
            if lost_at is not None:
                _reconnected(time.monotonic() - lost_at)
            return result

    return call


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose every database call survives a short loss of the server: the
    outermost call is retried with backoff for up to :data:`OUTAGE_S` seconds (nested calls are
    not retried on their own), then :class:`StudyStorageError`; after that every call fails at
    once, so a worker that gave up ends promptly instead of waiting once per call. Opening it
    is not retried: a wrong URL or a server that is down fails at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._calls: _CallDepth | None = None
        self._gave_up: str | None = None
        #: seconds to retry a lost connection (None: :data:`OUTAGE_S`; 0: fail at the first loss)
        self.outage_s: float | None = None
        super().__init__(*args, **kwargs)
        self._calls = _CallDepth()

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state["_calls"] = None
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._calls = _CallDepth()

    def record_heartbeat(self, trial_id: int) -> None:
        """Retried like every call; when the worker gives up, its heartbeat thread stays quiet (the
        trial's own thread ends the worker with the one line)."""
        try:
            _retrying_heartbeat(self, trial_id)
        except StudyStorageError:
            pass


_retrying_heartbeat = _retrying(optuna.storages.RDBStorage.record_heartbeat)
_NO_DATABASE = {
    "get_heartbeat_interval", "get_heartbeat_stale_trial_callback", "check_trial_is_updatable",
    "remove_session", "_fill_storage_url_template", "_set_default_engine_kwargs_for_mysql",
}  # fmt: skip
for _name, _member in vars(optuna.storages.RDBStorage).items():
    if (inspect.isfunction(_member) and not _name.startswith("__") and _name not in _NO_DATABASE
            and _name not in vars(ResilientRDBStorage)):  # fmt: skip
        setattr(ResilientRDBStorage, _name, _retrying(_member))


def _first_line(exc: BaseException) -> str:
    """The driver's own words for ``exc`` (SQLAlchemy and Optuna wrap them, sometimes as "()")."""
    causes = [c for e in _chain(exc) for c in (getattr(e, "orig", None), e) if c is not None]
    said = [c for c in causes if str(c).strip() not in ("", "()")]
    said.sort(key=lambda c: not type(c).__module__.startswith("psycopg"))  # the driver's first
    return str(said[0]).strip().splitlines()[0][:160] if said else type(_chain(exc)[-1]).__name__


def _lost(exc: BaseException) -> None:
    """One warning per outage, whichever thread (the trial's, its heartbeat's) meets it first."""
    global _in_outage
    with _outage:
        first, _in_outage = not _in_outage, True
    if first:
        print(f"warning: lost the study database ({_first_line(exc)}); retrying for up to {OUTAGE_S:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip


def _reconnected(seconds: float) -> None:
    global _in_outage, _last_reconnect
    with _outage:
        first, _in_outage = _in_outage, False
        _last_reconnect = time.monotonic()
    if first:
        print(f"the study database is back after {seconds:.1f} s", file=sys.stderr, flush=True)
