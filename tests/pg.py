"""A throwaway PostgreSQL server for the shared-study tests, started from Debian's binaries.

CI installs the ``postgresql`` package (``.ci/run``); the fixture initialises a cluster in a
temporary directory, starts it on a free loopback port and stops it afterwards. As root (CI
and these machines) the server runs as the ``postgres`` user, since PostgreSQL refuses root.
Where the binaries are missing the tests skip, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
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


@pytest.fixture(scope="session")
def postgres_url():
    bin_dir = _bin_dir()
    if bin_dir is None:
        from tests.conftest import missing

        missing("PostgreSQL (/usr/lib/postgresql/*/bin/initdb)", "apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="selfnas-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "selfnas",
                                    "--auth=trust", "-E", "UTF8"]), **run)  # fmt: skip
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off"
    subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts,
                                    "-l", str(root / "server.log"), "-w", "start"]), **run)  # fmt: skip
    try:
        for _ in range(50):
            ok = subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                capture_output=True)  # fmt: skip
            if ok.returncode == 0:
                break
            time.sleep(0.2)
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "selfnas",
                        "studies"], **run)  # fmt: skip
        yield f"postgresql://selfnas@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
