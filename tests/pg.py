"""A throwaway PostgreSQL server for the shared-study tests, started from Debian's binaries.

CI installs the ``postgresql`` package (``.ci/run``); :class:`PostgresServer` initialises a
cluster in a temporary directory, starts it on a free loopback port, can stop and restart it on
the same port (a database outage, for the chaos tests), makes fresh databases (a first start on
an empty database) and removes everything when closed. As root (CI and these machines) the
server runs as the ``postgres`` user, since PostgreSQL refuses root. Where the binaries are
missing the tests skip, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

USER = "selfnas"


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1 (trust authentication, user ``selfnas``)."""

    def __init__(self, binaries: Path, max_connections: int = 100) -> None:
        self.bin = binaries
        self.root = Path(tempfile.mkdtemp(prefix="selfnas-pg-"))
        self.data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.port = _free_port()
        self.max_connections = max_connections
        self._run(_as_server_user([str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                                   "--auth=trust", "-E", "UTF8"]))  # fmt: skip
        self.start()

    def _run(self, cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                f"-c max_connections={self.max_connections} -c fsync=off")  # fmt: skip
        self._run(_as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts,
                                   "-l", str(self.root / "server.log"), "-w", "start"]))  # fmt: skip
        for _ in range(100):
            if self.ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not come up on port {self.port}; see {self.root / 'server.log'}")

    def ready(self) -> bool:
        ok = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                            capture_output=True)  # fmt: skip
        return ok.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``fast`` ends every session (clients see their connections drop)."""
        self._run(_as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]))

    def restart(self, down_s: float = 0.0) -> float:
        """Stop the server (every connection drops), stay down ``down_s`` seconds, start it again on
        the same port; returns the seconds it was unreachable."""
        t0 = time.monotonic()
        self.stop()
        time.sleep(down_s)
        self.start()
        return time.monotonic() - t0

    def url(self, database: str = "studies") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL."""
        name = name or f"db{uuid.uuid4().hex[:10]}"
        self._run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name])
        return self.url(name)

    def close(self) -> None:
        subprocess.run(_as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                        "stop"]), capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def _binaries() -> Path:
    found = bin_dir()
    if found is None:
        from tests.conftest import missing

        missing("PostgreSQL (/usr/lib/postgresql/*/bin/initdb)", "apt-get install postgresql")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def postgres_server():
    """The session's server; tests that restart it must leave it running."""
    server = PostgresServer(_binaries())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """A database shared by the session's tests (studies are told apart by name)."""
    return postgres_server.create_database("studies")


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database: no Optuna table exists yet (a study's very first start)."""
    return postgres_server.create_database()
