"""A throwaway PostgreSQL server for tests and benchmarks: initdb and pg_ctl from the system's
packages (scripts/setup.sh installs them) in a temporary folder, on a free loopback port, with its
unix socket in that folder. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` system user (created by the Debian package), which then owns the folder."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

USER = "llm_tts"  # the server's superuser; local connections are trusted (loopback only)


class PostgresMissing(RuntimeError):
    """initdb or pg_ctl is not installed."""


def find_bin(name: str) -> str:
    """``name`` on the PATH, else in Debian's /usr/lib/postgresql/<version>/bin (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise PostgresMissing(
            f"{name} not found: install PostgreSQL (scripts/setup.sh does: apt-get install postgresql)"
        )
    return versions[-1]


@dataclass
class PostgresServer:
    folder: Path
    port: int
    run_as: list[str]  # the command prefix that runs a server binary as its owner

    @property
    def url(self) -> str:
        """The URL of the server's default database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def new_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]  # a generated name
        return self.database_url(name)

    def stop(self) -> None:
        data = self.folder / "data"
        subprocess.run(
            [*self.run_as, find_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(timeout_s: int = 60) -> PostgresServer:
    """Start a server in a new temporary folder; stop it with :meth:`PostgresServer.stop`."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="llm-tts-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")  # the Debian package's system user
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        run_as = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups", "--"]
    data, log = folder / "data", folder / "server.log"
    quiet = {"capture_output": True, "text": True, "env": {**os.environ, "LC_ALL": "C"}}
    done = subprocess.run(
        [*run_as, initdb, "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync"], **quiet
    )  # type: ignore[call-overload]
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stderr.strip()[-2000:]}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fsync off: a test database need not survive the machine crashing, only a client dying
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    cmd = [*run_as, pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", str(timeout_s), "start"]
    done = subprocess.run(cmd, **quiet)  # type: ignore[call-overload]
    if done.returncode != 0:
        detail = log.read_text()[-2000:] if log.exists() else done.stderr
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed: {detail}")
    return PostgresServer(folder, port, run_as)
