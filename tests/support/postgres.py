"""A private PostgreSQL cluster on a free 127.0.0.1 port, for one test module."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.servers import free_port
from tests.support.missing import require


def postgres_bin() -> Path | None:
    """Debian's server binaries (postgresql package), newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(found[0]).parent if found else None


class PostgresCluster:
    """initdb + pg_ctl in a temporary folder; trust auth, loopback only.

    PostgreSQL refuses to run as root, so as root it runs as the ``postgres``
    user that Debian's package creates.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fw-pg-"))
        self.data = self.dir / "data"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> "PostgresCluster":
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-w",
                  "-l", str(self.dir / "server.log"), "start")
        return self

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL cluster for the module (fails instead of skipping under CI=true)."""
    bin_dir = postgres_bin()
    require(bin_dir is not None, "Debian's postgresql package")
    cluster = PostgresCluster(bin_dir).start()
    yield cluster
    cluster.stop()
