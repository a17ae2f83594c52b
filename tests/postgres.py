"""A throwaway PostgreSQL 15 cluster for tests: a temp folder, a free loopback port, removed after.

Debian installs the server programs outside PATH; initdb refuses to run as root, so as root the
cluster is made and run by the ``postgres`` user. Connections from 127.0.0.1 need the password,
so the tests see a URL that carries one (and can check that it is never printed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "lrkit"
PASSWORD = "Pw-9d1e7c"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a fresh cluster; yield its URL (``postgresql://lrkit:PASSWORD@127.0.0.1:PORT/postgres``)."""
    folder = Path(tempfile.mkdtemp(prefix="lrkit-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    password_file = folder / "password"
    password_file.write_text(PASSWORD)
    if prefix:
        shutil.chown(password_file, "postgres")
    data = folder / "data"
    port = free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=60)

    run(str(BIN / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={password_file}",
        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
    settings = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    run(str(BIN / "pg_ctl"), "-D", str(data), "-o", settings, "-l", str(folder / "log"), "-w", "start")
    try:
        yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
