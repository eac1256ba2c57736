"""Run a private PostgreSQL with ``initdb``/``pg_ctl`` in a temporary directory on a free port.

For the tests, the bench and the demo: never the machine's own server on 5432. The binaries
are found on PATH, in /usr/local/bin, or in Debian's ``/usr/lib/postgresql/<version>/bin``
(package ``postgresql``). PostgreSQL refuses to run as root, so as root the cluster belongs to
the ``postgres`` user (Debian's package creates it) and lives in its own directory under the
system temp dir, which that user can reach.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import psycopg

from broker.runner import free_port

HOST = "127.0.0.1"
USER = "parkguard"
DATABASE = "fleet"


class PostgresError(RuntimeError):
    """PostgreSQL is not installed or would not start."""


def find_pg_binary(name: str) -> Path:
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    candidates = [Path("/usr/local/bin") / name]
    debian = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                    key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
                    reverse=True)
    for candidate in [*candidates, *debian]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise PostgresError(f"{name} not found: `make system-deps` installs Debian's postgresql")


def _as_owner() -> tuple[Callable[[], None] | None, int | None]:
    """(preexec_fn, uid): drop to ``postgres`` when we are root, else run as ourselves."""
    if os.geteuid() != 0:
        return None, None
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError as error:
        raise PostgresError("running as root needs a `postgres` user to own the cluster "
                            "(Debian's postgresql package creates it)") from error

    def drop() -> None:
        os.setgid(owner.pw_gid)
        os.setuid(owner.pw_uid)

    return drop, owner.pw_uid


class PostgresServer:
    """A throwaway cluster: ``dsn`` reaches database ``fleet`` as user ``parkguard``."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._drop, self._uid = _as_owner()
        base = tempfile.mkdtemp(prefix="parkguard-pg-") if workdir is None else str(workdir)
        self.workdir = Path(base).resolve()
        self._owns_dir = workdir is None
        self.data_dir = self.workdir / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)

    @property
    def dsn(self) -> str:
        return (f"host={HOST} port={self.port} dbname={DATABASE} user={USER} "
                f"password={self.password} connect_timeout=5")

    def _run(self, *args: str) -> None:
        result = subprocess.run(args, preexec_fn=self._drop, capture_output=True,  # noqa: S603
                                text=True, check=False, cwd=self.workdir)
        if result.returncode != 0:
            raise PostgresError(f"{Path(args[0]).name} failed: {result.stderr[-1500:]}")

    def start(self) -> PostgresServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._uid is not None:
            os.chown(self.workdir, self._uid, -1)
        if not (self.data_dir / "PG_VERSION").exists():
            pwfile = self.workdir / "pwfile"
            pwfile.write_text(self.password + "\n", encoding="utf-8")
            pwfile.chmod(0o600)
            if self._uid is not None:
                os.chown(pwfile, self._uid, -1)
            try:
                self._run(str(find_pg_binary("initdb")), "-D", str(self.data_dir), "-U", USER,
                          f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                          "--locale=C", "--no-sync")
            finally:
                pwfile.unlink()
        self._run(str(find_pg_binary("pg_ctl")), "-D", str(self.data_dir), "-w", "-t", "30",
                  "-l", str(self.workdir / "postgres.log"), "-o",
                  f"-p {self.port} -h {HOST} -k {self.workdir} -c fsync=off "
                  "-c full_page_writes=off", "start")  # a throwaway cluster: speed over durability
        with psycopg.connect(self.dsn.replace(f"dbname={DATABASE}", "dbname=postgres"),
                             autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (DATABASE,)).fetchone()
            if exists is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")
        return self

    def crash(self) -> None:
        """Stop at once, as a crash would (``pg_ctl stop -m immediate``); :meth:`start` again
        recovers the same cluster on the same port."""
        self._run(str(find_pg_binary("pg_ctl")), "-D", str(self.data_dir), "-m", "immediate",
                  "-w", "stop")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(PostgresError):
                self._run(str(find_pg_binary("pg_ctl")), "-D", str(self.data_dir), "-m",
                          "fast", "-w", "stop")
        if self._owns_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
